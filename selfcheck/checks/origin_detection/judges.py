"""The judges of ``origin_detection``: pure functions of the evidence, fed fixed input by tests.

Each mechanism gets its own verdict; the check's status is the worst of the enabled ones.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from pathlib import Path

from selfcheck.checks.origin_detection.evidence import AGENT_HOST_CGROUP, Evidence
from selfcheck.checks.origin_detection.texts import (
    ID_CLIENTS,
    INODE_CLIENTS,
    JUDGE,
    REMEDIATIONS,
)
from selfcheck.host.files import describe
from selfcheck.host.namespaces import (
    INITIAL_CGROUP_NS_INODE,
    INITIAL_PID_NS_INODE,
)
from selfcheck.model import Outcome, Reason, Status

# Below this share of sampled container processes resolving, a mechanism is degraded.
SAMPLE_THRESHOLD = 0.9
# The tagger's order in unified mode (datadog-agent comp/core/tagger/impl/tagger.go); a c:in-
# inode is first turned into a container ID. The legacy mode does not consult External Data.
UNIFIED_ORDER = ("uds", "client_container_id", "external_data", "entity_id", "external_data_pod")
LEGACY_ORDER = "legacy (DD_ORIGIN_DETECTION_UNIFIED false): External Data is not consulted"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One mechanism's result: what happens to the metrics of the clients that depend on it."""

    status: Status
    reason: Reason
    words: str
    enabled: bool
    facts: dict[str, object] = field(default_factory=dict)
    headline: str = ""
    """The short form for the check's message when the mechanism works (``words`` otherwise)."""

    def to_json(self) -> dict[str, object]:
        return {
            "status": str(self.status),
            "reason": str(self.reason),
            "enabled": self.enabled,
            "says": self.words,
            **self.facts,
        }


def _uds_failure(ev: Evidence) -> tuple[Status, Reason, str] | None:
    for step in (_judge_pid_namespace, _judge_passcred, _judge_cgroups, _judge_own_container):
        failed = step(ev)
        if failed is not None:
            return failed
    return None


def _judge_pid_namespace(ev: Evidence) -> tuple[Status, Reason, str] | None:
    status_path = ev.host_proc / "self" / "status"
    if ev.pid_view_error is not None:
        if ev.pid_view_error.errno == errno.ENOENT:
            return (
                Status.FAILED,
                Reason.NOT_HOST_PID,
                f"this process is invisible in {ev.host_proc} "
                f"({describe(ev.pid_view_error, status_path)}): that procfs belongs to a PID "
                "namespace this process is not in, so senders arrive with PID 0",
            )
        return _os_verdict(ev.pid_view_error, status_path, "read this process's status")
    view = ev.pid_view
    assert view is not None
    shared = view.levels == 1 if view.levels else view.pid == ev.own_pid
    if shared:
        return None
    return (
        Status.FAILED,
        Reason.NOT_HOST_PID,
        f"{status_path} has NSpid {' '.join(map(str, view.nspid)) or '(none)'}: this process "
        f"runs in a PID namespace below the one {ev.host_proc} belongs to (no hostPID), so "
        "senders in other pods arrive with PID 0",
    )


def _os_verdict(error: OSError, path: Path | str, what: str) -> tuple[Status, Reason, str]:
    failure = JUDGE.failure(error, path, what)
    return failure.status, failure.reason, failure.message


def _judge_passcred(ev: Evidence) -> tuple[Status, Reason, str] | None:
    if ev.passcred_error is not None:
        return _os_verdict(
            ev.passcred_error, "SO_PASSCRED datagram socket", "complete the round trip"
        )
    trip = ev.passcred
    assert trip is not None
    creds = trip.credentials
    if trip.faithful:
        return None
    got = "no SCM_CREDENTIALS message" if creds is None else f"PID {creds.pid}"
    return (
        Status.FAILED,
        Reason.PID_ZERO,
        f"a datagram from child PID {trip.sender_pid} to SO_PASSCRED socket {trip.address} "
        f"arrived with {got}: the Agent cannot tell who sent a DogStatsD packet",
    )


def _judge_cgroups(ev: Evidence) -> tuple[Status, Reason, str] | None:
    if ev.cgroup_error is not None:
        return _os_verdict(ev.cgroup_error, "/proc/self/mountinfo", "detect the cgroup version")
    if ev.cgroup_version is None:
        return (
            Status.FAILED,
            Reason.NO_CONTAINER_ID,
            f"no cgroup hierarchy is mounted under {ev.cgroup_root}, so the Agent cannot map "
            "any PID to a container",
        )
    if ev.own_error is not None:
        path = ev.host_proc / str(ev.host_pid) / "cgroup"
        return _os_verdict(ev.own_error, path, "read this process's cgroup")
    return None


def _judge_own_container(ev: Evidence) -> tuple[Status, Reason, str] | None:
    if ev.own_in_runtime and ev.container_id is None:
        return (
            Status.FAILED,
            Reason.NO_CONTAINER_ID,
            f"this container's cgroup {ev.own_cgroup or '(no line for the Agent controller)'} "
            "gives no container ID by the Agent's rule, so its metrics go out untagged",
        )
    ratio = ev.sample.ratio
    if ratio is not None and ratio < SAMPLE_THRESHOLD:
        example = ev.sample.unresolved_examples[0] if ev.sample.unresolved_examples else "?"
        return (
            Status.DEGRADED,
            Reason.NO_CONTAINER_ID,
            f"only {ev.sample.resolved} of {ev.sample.in_containers} sampled container "
            f"processes in {ev.host_proc} map to a container ID (e.g. {example})",
        )
    return None


def _sample_words(resolved: int, total: int, what: str) -> str:
    return (
        f"{resolved}/{total} sampled container processes {what}"
        if total
        else ("no container process sampled")
    )


UDP_WORDS = (
    "UDS origin detection does not apply: applications send over UDP (DD_DOGSTATSD_SOCKET is "
    "not set), which carries no sender credentials (the Agent's UDP listener has no origin "
    "detection, comp/dogstatsd/listeners/udp.go); only client-sent origins tag them"
)


def judge_uds(ev: Evidence) -> Verdict:
    if ev.over_udp:
        return Verdict(Status.SKIPPED, Reason.NOT_ENABLED, UDP_WORDS, False)
    failure = _uds_failure(ev)
    facts: dict[str, object] = {"sample_ratio": _round(ev.sample.ratio)}
    if failure is not None:
        status, reason, words = failure
        lead = (
            "UDS origin detection is off (no hostPID)"
            if reason == Reason.NOT_HOST_PID
            else "UDS origin detection does not work"
        )
        return Verdict(status, reason, f"{lead}: {words}", ev.uds_enabled, facts)
    assert ev.passcred is not None
    if ev.container_id:
        own = f"own container {ev.container_id[:12]}"
    elif ev.private_cgroupns and ev.own_cgroup == "/":
        found = ev.own_container_by_inode
        own = (
            "private cgroup namespace: the Agent's own container is found by inode "
            f"({found[:12]}), not by its cgroup"
            if found
            else "private cgroup namespace: own cgroup reads '/', other containers still resolve"
        )
    else:
        own = f"not in a container (cgroup {ev.own_cgroup}), no container ID applies"
    words = (
        f"UDS origin detection works: host PID namespace, SO_PASSCRED PID "
        f"{ev.passcred.sender_pid} matches; {own}; "
        f"{_sample_words(ev.sample.resolved, ev.sample.in_containers, 'resolve')}"
    )
    return Verdict(Status.OK, Reason.OK, words, ev.uds_enabled, facts)


def _ratio_verdict(
    ratio: float | None,
    reason: Reason,
    *,
    good: str,
    bad: str,
    enabled: bool,
    facts: dict[str, object],
    headline: str = "",
) -> Verdict:
    if ratio is None or ratio >= SAMPLE_THRESHOLD:
        return Verdict(Status.OK, Reason.OK, good, enabled, facts, headline)
    status = Status.FAILED if ratio == 0 else Status.DEGRADED
    return Verdict(status, reason, bad, enabled, facts)


def judge_client_inode(ev: Evidence) -> Verdict:
    facts: dict[str, object] = {}
    enabled = ev.client_enabled
    if ev.cgroup_mount_missing:
        return Verdict(
            Status.FAILED,
            Reason.INODE_UNRESOLVED,
            f"{INODE_CLIENTS} are not tagged: {AGENT_HOST_CGROUP} is not mounted (the chart's "
            "cgroups volume), so the Agent's inode map holds only this container's own tree",
            enabled,
        )
    cmap = ev.inode_map
    if cmap is None:
        return Verdict(
            Status.FAILED,
            Reason.INODE_UNRESOLVED,
            f"{INODE_CLIENTS} are not tagged: no cgroup hierarchy the Agent walks is mounted "
            f"under {ev.cgroup_root} (the cgroups volume), so it has no inode map",
            enabled,
        )
    facts.update(
        hierarchy=cmap.hierarchy,
        map_containers=cmap.containers,
        map_dirs_walked=cmap.dirs_walked,
        map_truncated=cmap.truncated,
        ratio=_round(ev.sample.inode_ratio),
    )
    if ev.sample.inode_examples:
        facts["unresolved_examples"] = list(ev.sample.inode_examples)
    if ev.private_cgroupns:
        facts.update(own_inode=ev.own_inode, own_container=ev.own_container_by_inode)
    tally = _sample_words(ev.sample.inode_resolved, ev.sample.inode_judged, "resolve by inode")
    if ev.sample.not_walked:
        facts["not_walked"] = ev.sample.not_walked
        tally += f" ({ev.sample.not_walked} more unknown: the walk stopped at its cap)"
    still = "still " if _uds_failure(ev) is not None else ""
    return _ratio_verdict(
        ev.sample.inode_ratio,
        Reason.INODE_UNRESOLVED,
        headline=f"{INODE_CLIENTS} are {still}tagged ({tally})",
        good=f"{INODE_CLIENTS} are tagged: {tally} through the Agent's map of "
        f"{cmap.containers} container cgroups in {cmap.hierarchy}",
        bad=f"{INODE_CLIENTS} are not all tagged: only {tally} through the Agent's map of "
        f"{cmap.containers} container cgroups in {cmap.hierarchy}",
        enabled=enabled,
        facts=facts,
    )


def judge_client_id(ev: Evidence) -> Verdict:
    c = ev.sample
    facts: dict[str, object] = {
        "ratio": _round(c.id_ratio),
        "found": c.id_found,
        "from_mountinfo": c.from_mountinfo,
    }
    if c.id_examples:
        facts["unrecognised_examples"] = list(c.id_examples)
    tally = _sample_words(c.id_recognised, c.in_containers, "give an ID the Agent recognises")
    return _ratio_verdict(
        c.id_ratio,
        Reason.NO_CONTAINER_ID,
        headline=f"clients that send their container ID are tagged ({tally})",
        good=f"{ID_CLIENTS} are tagged where the Agent knows the container: {tally}",
        bad=f"{ID_CLIENTS} are not all tagged: only {tally}",
        enabled=ev.client_enabled,
        facts=facts,
    )


def judge_receipt(ev: Evidence) -> Verdict | None:
    """The Agent's own counters around selfcheck's datagram, read honestly.

    ``Packets`` counts every client's packets, so growth by at least the one sent is
    necessary, not sufficient: it is conclusive only when it grew by exactly one, and said to
    be "consistent" otherwise. No growth after a retry is ``not_received``. Errors that grew
    with the datagram are ``pid_zero``; the quiet window says whether other senders moved
    them too.
    """
    r = ev.receipt
    if r is None or not r.readable:
        return None
    grown = r.delta("Packets")
    errors = r.delta("OriginDetectionErrors")
    facts: dict[str, object] = {
        "port": r.port,
        "packets_delta": grown,
        "origin_errors_delta": errors,
        "retried": r.retried,
        "body_bytes": r.after.body_bytes,
    }
    enabled = ev.uds_enabled or ev.client_enabled
    if grown < r.sent:
        return Verdict(
            Status.FAILED,
            Reason.NOT_RECEIVED,
            f"the Agent did not receive selfcheck's datagram: dogstatsd-uds.Packets on "
            f"127.0.0.1:{r.port} did not grow{' after a retry' if r.retried else ''}",
            enabled,
            facts,
        )
    if errors > 0:
        quiet = r.delta("OriginDetectionErrors", r.quiet, r.after) if r.quiet else None
        facts["quiet_window_errors"] = quiet
        others = (
            "; other senders moved it too in a quiet window"
            if quiet
            else " and not in a quiet window"
        )
        return Verdict(
            Status.FAILED,
            Reason.PID_ZERO,
            f"the Agent received selfcheck's datagram but could not attribute a sender: "
            f"OriginDetectionErrors grew by {errors}{others}",
            ev.uds_enabled,
            facts,
        )
    conclusive = grown == r.sent
    facts["conclusive"] = conclusive
    how = "" if conclusive else f" (consistent, not conclusive: Packets grew by {grown})"
    return Verdict(
        Status.OK,
        Reason.OK,
        f"the Agent counted selfcheck's datagram with no origin error{how}",
        enabled,
        facts,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


_SEVERITY = {Status.OK: 0, Status.DEGRADED: 1, Status.FAILED: 2}


def verdicts(ev: Evidence) -> dict[str, Verdict]:
    found = {
        "uds": judge_uds(ev),
        "receipt": judge_receipt(ev),
        "client_inode": judge_client_inode(ev),
        "client_container_id": judge_client_id(ev),
    }
    return {name: v for name, v in found.items() if v is not None}


NOT_ENABLED_WORDS = (
    "origin detection is not enabled in the Agent (DD_DOGSTATSD_ORIGIN_DETECTION and "
    "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT false)"
)


UDP_NOT_ENABLED_WORDS = (
    "applications send over UDP (DD_DOGSTATSD_SOCKET is not set), where only client-sent "
    "origins tag, and DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT is false"
)


def _config_words(ev: Evidence) -> str:
    if not ev.client_enabled or ev.over_udp:
        return ""
    if not ev.uds_enabled:
        return "UDS origin detection is disabled (DD_DOGSTATSD_ORIGIN_DETECTION false); "
    return ""


def _short(verdict: Verdict) -> str:
    return verdict.headline if verdict.status == Status.OK and verdict.headline else verdict.words


def _message(ev: Evidence, found: dict[str, Verdict]) -> str:
    parts = [found["uds"].words]
    if ev.client_enabled or not ev.uds_enabled or ev.over_udp:
        parts += [_short(found["client_inode"]), _short(found["client_container_id"])]
    else:
        parts.append(
            "client-sent origins (c:in-, c:ci-) are ignored (DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT "
            "false)"
        )
    if "receipt" in found:
        parts.append(found["receipt"].words)
    return _config_words(ev) + "; ".join(parts)


def details_of(ev: Evidence, found: dict[str, Verdict]) -> dict[str, object]:
    """Small facts for ``--verbose`` and ``/status``, one entry per mechanism; never a label."""
    mechanisms: dict[str, object] = {name: v.to_json() for name, v in found.items()}
    mechanisms["external_data"] = {
        "configured": ev.external_env,
        "enabled": ev.client_enabled and ev.unified,
        "says": "DD_EXTERNAL_ENV is "
        + ("set" if ev.external_env else "not set")
        + " in this container; External Data is resolved through the kubelet, not provable here",
    }
    mechanisms["entity_id"] = {
        "configured": ev.entity_id,
        "says": "DD_ENTITY_ID is "
        + ("set" if ev.entity_id else "not set")
        + " in this container; the entity ID is resolved through the kubelet, not provable here",
    }
    if "receipt" not in found:
        mechanisms["receipt"] = {"status": "not_read", "says": ev.receipt_note}
    details: dict[str, object] = {
        "host_proc": str(ev.host_proc),
        "mechanisms": mechanisms,
        "resolution_order": list(UNIFIED_ORDER) if ev.unified else LEGACY_ORDER,
        "origin_detection_enabled": ev.uds_enabled,
        "origin_detection_client": ev.client_enabled,
        "origin_detection_unified": ev.unified,
        "pid_namespace_inode": ev.pid_ns_inode,
        "initial_pid_namespace": ev.pid_ns_inode == INITIAL_PID_NS_INODE,
        "cgroup_namespace_inode": ev.cgroup_ns_inode,
        "initial_cgroup_namespace": ev.cgroup_ns_inode == INITIAL_CGROUP_NS_INODE,
        "cgroup_layout": ev.cgroup_layout,
        "sampled_processes": ev.sample.sampled,
        "container_processes": ev.sample.in_containers,
        "resolved_processes": ev.sample.resolved,
        "unreadable_processes": ev.sample.unreadable,
    }
    if ev.pid_view is not None:
        details.update(nspid=list(ev.pid_view.nspid), host_pid=ev.host_pid)
    if ev.passcred is not None:
        creds = ev.passcred.credentials
        details.update(
            passcred_sender_pid=ev.passcred.sender_pid,
            passcred_received_pid=creds.pid if creds is not None else None,
            passcred_socket=ev.passcred.address,
        )
    if ev.own_cgroup is not None:
        details.update(own_cgroup=ev.own_cgroup, container_id=ev.container_id)
    if ev.sample.unresolved_examples:
        details["unresolved_examples"] = list(ev.sample.unresolved_examples)
    return details


def figures_of(ev: Evidence, found: dict[str, Verdict]) -> dict[str, float]:
    figures: dict[str, float] = {
        "sampled_processes": ev.sample.sampled,
        "container_processes": ev.sample.in_containers,
        "external_data_configured": float(ev.external_env),
        "entity_id_configured": float(ev.entity_id),
    }
    if ev.sample.ratio is not None:
        figures["resolution_ratio"] = round(ev.sample.ratio, 4)
    if ev.sample.inode_ratio is not None:
        figures["inode_resolution_ratio"] = round(ev.sample.inode_ratio, 4)
    if ev.sample.id_ratio is not None:
        figures["client_id_recognised_ratio"] = round(ev.sample.id_ratio, 4)
    if ev.inode_map is not None:
        figures["inode_map_containers"] = ev.inode_map.containers
    for name, verdict in found.items():
        if verdict.status is not Status.SKIPPED:  # not judged: absent, as documented
            figures[f"mechanism_{name}_ok"] = float(verdict.status.is_success)
        figures[f"mechanism_{name}_enabled"] = float(verdict.enabled)
    return figures


def judge(ev: Evidence) -> Outcome:
    """Each mechanism judged on its own; the worst enabled one gives the status and reason.

    With none enabled the worst of all is the verdict the node would get if they were; the
    runner makes it a ``skipped``/``not_enabled`` (``CheckSpec.unused``) unless it is required.
    """
    found = verdicts(ev)
    judged = [v for v in found.values() if v.status is not Status.SKIPPED]
    counted = [v for v in judged if v.enabled]
    worst = max(counted or judged, key=lambda v: _SEVERITY.get(v.status, 2))
    status, reason = worst.status, worst.reason
    remediation = REMEDIATIONS.get(reason, "") if status != Status.OK else ""
    return Outcome(
        status,
        reason,
        _message(ev, found),
        remediation,
        details=details_of(ev, found),
        figures=figures_of(ev, found),
    )
