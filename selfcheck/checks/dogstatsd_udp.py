"""``dogstatsd_udp``: the Agent's DogStatsD UDP port, where the install sends applications.

An install without the DogStatsD socket for applications (Helm
``datadog.dogstatsd.useSocketVolume: false``, the Operator's
``features.dogstatsd.unixDomainSocketConfig.enabled: false``, GKE Autopilot, OpenShift's
advice) has them send to UDP ``DD_DOGSTATSD_PORT`` (8125): at the node's address through the
hostPort, or through the chart's and the Operator's local Service. The Agent listens there on
every address when ``DD_DOGSTATSD_NON_LOCAL_TRAFFIC`` is true, on its pod's loopback otherwise
(DataDog/datadog-agent comp/dogstatsd/listeners/udp.go), and counts every packet it reads in its
``dogstatsd-udp`` expvar map. A client never sees an error: a closed port only answers with an
ICMP port unreachable, which the kernel turns into ``ECONNREFUSED`` on a connected socket
(``selfcheck.host.udp``). So this check sends one datagram where the Agent listens, waits for a
refusal, and reads the Agent's own count of it where its expvar answers.
"""

from __future__ import annotations

import time
from typing import Any

from selfcheck import delivery
from selfcheck.checks._common import Judge
from selfcheck.config import UDP, Config
from selfcheck.context import CheckContext
from selfcheck.host.expvar import UdsVars, read_map
from selfcheck.host.files import describe
from selfcheck.host.receipt import heartbeat
from selfcheck.host.sockets import Deadline
from selfcheck.host.udp import UdpSend, send_udp
from selfcheck.model import Outcome, Reason, Status, ok, skipped
from selfcheck.registry import CheckSpec, register

UDP_KEY = "dogstatsd-udp"
UDP_COUNTERS = ("Packets", "PacketReadingErrors", "Bytes")
FIGURES = {"Packets": "udp_packets", "PacketReadingErrors": "udp_packet_reading_errors"}
BUDGET_CEILING = 1.0
RECEIPT_RETRY = 0.15
"""The Agent counts a UDP packet as soon as it reads it; one retry covers a busy reader."""

PORT_FIX = (
    "Nothing listens on the Agent's DogStatsD UDP port. Set DD_DOGSTATSD_PORT in the agent "
    "container to the port applications send to (Helm datadog.dogstatsd.port, default 8125; "
    "Operator spec.features.dogstatsd.hostPortConfig.port with hostPortConfig.enabled: true), "
    "keep DD_USE_DOGSTATSD true, and check that no other process of the pod holds that port. "
    "Applications that send to the node's address also need the hostPort (Helm "
    "datadog.dogstatsd.useHostPort: true; Operator "
    "spec.features.dogstatsd.hostPortConfig.enabled: true)."
)
REMEDIATIONS = {
    Reason.ECONNREFUSED: PORT_FIX,
    Reason.NOT_SHARED: (
        "The Agent listens for DogStatsD over UDP on its own pod's loopback only, so "
        "applications in other pods cannot reach it. Set DD_DOGSTATSD_NON_LOCAL_TRAFFIC=true "
        "in the agent container (Helm datadog.dogstatsd.nonLocalTraffic: true, the default; "
        "Operator spec.features.dogstatsd.nonLocalTraffic: true), or give applications the "
        "socket (Helm datadog.dogstatsd.useSocketVolume: true; Operator "
        "spec.features.dogstatsd.unixDomainSocketConfig.enabled: true)."
    ),
    Reason.NOT_RECEIVED: (
        "The port takes datagrams but the Agent's dogstatsd-udp.Packets did not grow: another "
        "process holds DD_DOGSTATSD_PORT in the Agent's network namespace (a second DogStatsD, "
        "the Agent Data Plane with DD_USE_DOGSTATSD left on in the agent container), or the "
        "expvar read is another Agent's. Look at `agent status` (DogStatsD section) and "
        "`ss -ulpn` in the Agent's pod."
    ),
    Reason.NOT_APPLICABLE: (
        "Nothing refused the datagram, but across the pod network silence proves nothing and "
        "the Agent's expvar (127.0.0.1 in its own pod) is out of reach: run selfcheck as the "
        "Agent pod's sidecar to read the Agent's receipt."
    ),
    Reason.IO_ERROR: (
        "Sending to the Agent's UDP port failed: check the pod's network (a NetworkPolicy, "
        "the CNI) between this pod and the Agent pod, and DD_DOGSTATSD_PORT."
    ),
}
JUDGE = Judge(REMEDIATIONS, {Reason.ECONNREFUSED: "nothing listens on that UDP port"})


def _where(ctx: CheckContext) -> tuple[str | None, str]:
    """The address this process reaches the Agent's UDP port at, or why there is none."""
    eyes, config = ctx.host.eyes, ctx.config
    if eyes.shares_loopback:
        return "127.0.0.1", "the Agent's network namespace is this container's (same pod)"
    if not config.dogstatsd_non_local_traffic:
        return None, (
            "the Agent listens on its own pod's loopback (DD_DOGSTATSD_NON_LOCAL_TRAFFIC "
            "false), out of reach from another pod"
        )
    if eyes.agent_address is None:
        return None, "the Agent pod's address could not be read from its network namespace"
    return eyes.agent_address, "the Agent pod's address (node mode)"


def run(ctx: CheckContext) -> Outcome:
    config = ctx.config
    port = config.dogstatsd_port
    details: dict[str, Any] = {
        "transport": config.dogstatsd_transport,
        "port": port,
        "non_local_traffic": config.dogstatsd_non_local_traffic,
    }
    figures: dict[str, float] = {}
    findings: tuple[Any, ...] = ()
    if config.dogstatsd_transport == UDP:  # the service checks go here (docs/datadog.md)
        delivered, figures, findings = delivery.report(config)
        details.update(delivered)
    extra: dict[str, Any] = {"details": details, "figures": figures, "findings": findings}
    if port <= 0:
        return skipped(
            Reason.NOT_ENABLED, "DD_DOGSTATSD_PORT=0: the Agent opens no UDP port", **extra
        )
    host, why = _where(ctx)
    details["target"] = why
    if host is None:
        return _out_of_reach(config, port, why, extra)
    if config.dogstatsd_mode != "send":
        return skipped(
            Reason.DISABLED,
            f"SELFCHECK_DOGSTATSD_MODE=connect: nothing sent to UDP port {port}, and UDP has no "
            "connection to prove",
            **extra,
        )
    return _judged(ctx, host, port, extra)


def _out_of_reach(config: Config, port: int, why: str, extra: dict[str, Any]) -> Outcome:
    """Node mode without a way to the port: a failure when applications depend on it and
    cannot reach it either, else not provable from here."""
    if config.dogstatsd_transport == UDP and not config.dogstatsd_non_local_traffic:
        return JUDGE.outcome(
            Status.FAILED,
            Reason.NOT_SHARED,
            f"UDP port {port}: {why}; DD_DOGSTATSD_SOCKET is not set either, so applications "
            "in other pods have no way to send metrics to this Agent",
            **extra,
        )
    return skipped(Reason.NOT_APPLICABLE, f"UDP port {port} not judged: {why}", **extra)


def _judged(ctx: CheckContext, host: str, port: int, extra: dict[str, Any]) -> Outcome:
    config, details = ctx.config, extra["details"]
    deadline = Deadline(ctx.budget(BUDGET_CEILING))
    before, note = _read_udp_vars(config, deadline) if ctx.host.eyes.shares_loopback else (None, "")
    try:
        sent = send_udp(host, port, heartbeat(config.heartbeat_metric))
    except OSError as error:
        return JUDGE.failure(error, f"udp://{host}:{port}", "send a DogStatsD datagram", **extra)
    details["sent_bytes"] = sent.sent
    if sent.refused is not None:
        return JUDGE.failure(
            sent.refused, sent.target, f"send to the Agent's DogStatsD UDP port {port}", **extra
        )
    after = _after(before, deadline) if before is not None else None
    if before is not None and after is None:
        note = f"not read after the datagram: 127.0.0.1:{before.port} stopped answering"
    loopback = ctx.host.eyes.shares_loopback is True
    verdict = _receipt(
        config, sent, extra, before=before, after=after, note=note, loopback=loopback
    )
    loopback_only = config.dogstatsd_transport == UDP and not config.dogstatsd_non_local_traffic
    return (
        _loopback_only(verdict, extra) if verdict.status is Status.OK and loopback_only else verdict
    )


def _loopback_only(verdict: Outcome, extra: dict[str, Any]) -> Outcome:
    """UDP is the applications' only transport but listens on the loopback: they are lost."""
    return JUDGE.outcome(
        Status.FAILED,
        Reason.NOT_SHARED,
        f"{verdict.message}; but the Agent listens on its pod's loopback only "
        "(DD_DOGSTATSD_NON_LOCAL_TRAFFIC false) and DD_DOGSTATSD_SOCKET is not set: "
        "applications in other pods cannot send metrics to it",
        **extra,
    )


def _receipt(
    config: Config,
    sent: UdpSend,
    extra: dict[str, Any],
    *,
    before: UdsVars | None,
    after: UdsVars | None,
    note: str,
    loopback: bool,
) -> Outcome:
    """The Agent's count of the datagram; without it, what the silence proves."""
    details, figures = extra["details"], extra["figures"]
    did = f"{sent.target}: sent a {sent.sent}-byte {config.heartbeat_metric} counter"
    if before is None or after is None:
        details["expvar"] = (
            note or "not read: the Agent's 127.0.0.1 is in another network namespace"
        )
        if loopback:
            return ok(
                f"{did}, not refused (loopback refuses a closed port at once, so a socket is "
                f"bound there); the Agent's receipt not read: {details['expvar']}",
                **extra,
            )
        return JUDGE.outcome(
            Status.SKIPPED,
            Reason.NOT_APPLICABLE,
            f"{did}, not refused, but unproven: no ICMP refusal may mean a filtered network as "
            "well as a listener, and the Agent's dogstatsd-udp receipt cannot be read from here",
            **extra,
        )
    grown = (after.get("Packets") or 0) - (before.get("Packets") or 0)
    details.update(expvar=f"http://127.0.0.1:{before.port}/debug/vars", packets_delta=grown)
    details["dogstatsd_udp"] = dict(after.counters or {})
    figures.update(
        {name: float(v) for k, name in FIGURES.items() if (v := after.get(k)) is not None}
    )
    if grown < 1:
        return JUDGE.outcome(
            Status.FAILED,
            Reason.NOT_RECEIVED,
            f"{did}, not refused, but the Agent's dogstatsd-udp.Packets on "
            f"127.0.0.1:{before.port} did not grow: another process holds the port",
            **extra,
        )
    how = "" if grown == 1 else f" (consistent, not conclusive: Packets grew by {grown})"
    return ok(f"{did}; the Agent counted it in dogstatsd-udp.Packets{how}", **extra)


def _read_udp_vars(config: Config, deadline: Deadline) -> tuple[UdsVars | None, str]:
    """The ``dogstatsd-udp`` map from the first expvar port that has it, or why none had."""
    misses: list[str] = []
    for port in config.expvar_ports:
        try:
            found = read_map(port, deadline, UDP_KEY, UDP_COUNTERS)
        except OSError as error:
            misses.append(describe(error, f"127.0.0.1:{port}"))
            continue
        if found.get("Packets") is not None:
            return found, ""
        misses.append(f"127.0.0.1:{port}/debug/vars: HTTP {found.status}, no {UDP_KEY} map")
    return None, "not read: " + ("; ".join(misses) or "no expvar port")


def _after(before: UdsVars, deadline: Deadline) -> UdsVars | None:
    """The map after the datagram, once more after a moment if it has not moved yet."""
    try:
        after = read_map(before.port, deadline, UDP_KEY, UDP_COUNTERS)
        if (after.get("Packets") or 0) <= (
            before.get("Packets") or 0
        ) and deadline.left() > RECEIPT_RETRY:
            time.sleep(RECEIPT_RETRY)
            after = read_map(before.port, deadline, UDP_KEY, UDP_COUNTERS)
    except OSError:
        return None
    return after


def _unused(config: Config) -> str:
    if config.dogstatsd_port <= 0:
        return "DD_DOGSTATSD_PORT is 0: the Agent opens no DogStatsD UDP port"
    if not config.udp_offered:
        return (
            "applications send to DD_DOGSTATSD_SOCKET, and the UDP port listens on the Agent "
            "pod's loopback only (DD_DOGSTATSD_NON_LOCAL_TRAFFIC false)"
        )
    return ""


SPEC = register(
    CheckSpec(
        id="dogstatsd_udp",
        title="DogStatsD over UDP (DD_DOGSTATSD_PORT)",
        run=run,
        proves=(
            "One DogStatsD counter sent on a connected UDP socket to DD_DOGSTATSD_PORT (8125) "
            "where the Agent listens (127.0.0.1 in its pod; the Agent pod's address in node "
            "mode when DD_DOGSTATSD_NON_LOCAL_TRAFFIC is true) is not refused (an ICMP port "
            "unreachable, ECONNREFUSED), and the Agent's dogstatsd-udp.Packets grows where "
            "its expvar answers (DD_EXPVAR_PORT, else 5000, then 6000). With UDP as the only "
            "transport (no DD_DOGSTATSD_SOCKET), a port on the Agent's loopback only fails: "
            "other pods cannot reach it."
        ),
        why=(
            "Installs without the DogStatsD socket for applications send custom metrics over "
            "UDP, and a UDP client never sees an error: a closed port, a wrong port or a "
            "loopback-only listener loses every metric silently."
        ),
        remediations=REMEDIATIONS,
        required_by_default=lambda config: config.udp_offered,
        required_because=(
            "required: the install offers applications the UDP port (no DD_DOGSTATSD_SOCKET, "
            "or DD_DOGSTATSD_NON_LOCAL_TRAFFIC true)"
        ),
        unused=_unused,
        figures={
            "udp_packets": "Packets the Agent's DogStatsD read from its UDP port (expvar).",
            "udp_packet_reading_errors": "Errors the Agent hit reading its UDP port (expvar).",
            **delivery.FIGURES,
        },
        findings=delivery.FINDINGS,
    )
)
