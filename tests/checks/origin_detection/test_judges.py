"""origin_detection's judges, fed fixed evidence: kernel answers a healthy machine never gives
(PID 0 from our own child, a cgroup v2 host, a capped walk) and every mechanism's verdict."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from selfcheck.checks.origin_detection import SPEC
from selfcheck.checks.origin_detection.evidence import Evidence
from selfcheck.checks.origin_detection.judges import judge
from selfcheck.checks.origin_detection.texts import INODE_CLIENTS
from selfcheck.host.expvar import UdsVars
from selfcheck.host.inodes import InodeMap
from selfcheck.host.namespaces import INITIAL_CGROUP_NS_INODE, INITIAL_PID_NS_INODE, PidView
from selfcheck.host.passcred import Credentials, RoundTrip
from selfcheck.host.receipt import Receipt
from selfcheck.host.sampling import Sample
from selfcheck.model import Outcome, Reason, Status
from selfcheck.registry import required_ids
from tests.support.configs import make_config

CID = "4f1c2b9d8e7a6f5c4b3a29180f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6"
ONLY = ["check", "--only", "origin_detection", "--json"]
REQUIRED = {"DD_DOGSTATSD_ORIGIN_DETECTION": "true"}
HEALTHY = Sample(50, 10, 10, inode_resolved=10, id_found=10, id_recognised=10)


# --- the judge, for kernel answers a healthy machine never gives -----------------------------


def _evidence(**changes: object) -> Evidence:
    ev = Evidence(Path("/host/proc"), Path("/host/sys/fs/cgroup"), 4242)
    ev.pid_view = PidView(4242, (4242,))
    ev.pid_ns_inode = INITIAL_PID_NS_INODE
    ev.cgroup_ns_inode = INITIAL_CGROUP_NS_INODE
    ev.passcred = RoundTrip(4243, Credentials(4243, 0, 0), "@00001")
    ev.cgroup_layout, ev.cgroup_version = "v2", 2
    ev.own_cgroup, ev.own_in_runtime = f"/system.slice/docker-{CID}.scope", True
    ev.sample = HEALTHY
    ev.hierarchy = "/host/sys/fs/cgroup"
    ev.inode_map = InodeMap(ev.hierarchy, {7001: CID}, {CID: 7001}, 40)
    ev.uds_enabled = True
    for key, value in changes.items():
        setattr(ev, key, value)
    return ev


def _receipt(packets: int, errors: int, quiet_errors: int | None = None) -> Receipt:
    def at(p: int, e: int) -> UdsVars:
        return UdsVars(5000, 200, {"Packets": p, "OriginDetectionErrors": e}, 300, False)

    quiet = None if quiet_errors is None else at(100 + packets, 5 + errors + quiet_errors)
    return Receipt(at(100, 5), at(100 + packets, 5 + errors), quiet)


def _mechanisms(outcome: Outcome) -> dict[str, dict[str, object]]:
    found = outcome.details["mechanisms"]
    assert isinstance(found, dict)
    return found


NO_HOST_PID = {"pid_view": PidView(None, (4242, 7)), "client_enabled": True}


def test_judge_without_host_pid_the_inode_path_still_tags() -> None:
    """The issue's own words: uds off, inode clients still tagged, per mechanism."""
    outcome = judge(_evidence(**NO_HOST_PID))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.NOT_HOST_PID)
    assert outcome.message.startswith("UDS origin detection is off (no hostPID)")
    assert f"{INODE_CLIENTS} are still tagged" in outcome.message
    found = _mechanisms(outcome)
    assert found["uds"]["status"] == "failed" and found["client_inode"]["status"] == "ok"
    assert outcome.figures["mechanism_uds_ok"] == 0.0
    assert outcome.figures["mechanism_client_inode_ok"] == 1.0
    assert outcome.figures["inode_resolution_ratio"] == 1.0


def test_judge_client_only_configuration_is_not_failed_by_uds() -> None:
    """DD_DOGSTATSD_ORIGIN_DETECTION false, _CLIENT true (no hostPID, e.g. GKE Autopilot)."""
    outcome = judge(_evidence(**NO_HOST_PID, uds_enabled=False))
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK)
    assert "UDS origin detection is disabled" in outcome.message
    assert _mechanisms(outcome)["uds"]["enabled"] is False


def test_judge_unresolved_inodes() -> None:
    few = replace(HEALTHY, inode_resolved=3, inode_examples=("/kubepods/pod1/sub (inode 9)",))
    outcome = judge(_evidence(sample=few, client_enabled=True))
    assert (outcome.status, outcome.reason) == (Status.DEGRADED, Reason.INODE_UNRESOLVED)
    assert "only 3/10" in outcome.message
    assert "cgroups volume" in outcome.remediation
    none = replace(HEALTHY, inode_resolved=0)
    assert judge(_evidence(sample=none, client_enabled=True)).status == Status.FAILED
    # the Agent ignores client fields without DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT
    assert judge(_evidence(sample=none)).status == Status.OK


def test_judge_cgroups_mount_missing_names_it() -> None:
    outcome = judge(_evidence(cgroup_mount_missing=True, inode_map=None, client_enabled=True))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.INODE_UNRESOLVED)
    assert "/host/sys/fs/cgroup is not mounted" in outcome.message
    assert "cgroups volume" in outcome.message


def test_judge_unrecognised_client_ids() -> None:
    pods = Sample(50, 4, 4, inode_resolved=4, id_found=4, id_recognised=1)
    outcome = judge(_evidence(sample=pods, client_enabled=True))
    assert (outcome.status, outcome.reason) == (Status.DEGRADED, Reason.NO_CONTAINER_ID)
    assert outcome.figures["client_id_recognised_ratio"] == 0.25


@pytest.mark.parametrize(
    ("receipt", "status", "reason", "conclusive"),
    [
        (_receipt(1, 0), Status.OK, Reason.OK, True),
        (_receipt(9, 0), Status.OK, Reason.OK, False),
        (_receipt(0, 0), Status.FAILED, Reason.NOT_RECEIVED, None),
        (_receipt(1, 1, quiet_errors=0), Status.FAILED, Reason.PID_ZERO, None),
        (_receipt(3, 2, quiet_errors=4), Status.FAILED, Reason.PID_ZERO, None),
    ],
)
def test_judge_receipt(
    receipt: Receipt, status: Status, reason: Reason, conclusive: bool | None
) -> None:
    outcome = judge(_evidence(receipt=receipt))
    assert (outcome.status, outcome.reason) == (status, reason)
    found = _mechanisms(outcome)["receipt"]
    assert found.get("conclusive") == conclusive
    if reason == Reason.PID_ZERO:
        assert ("other senders" in outcome.message) is bool(found["quiet_window_errors"])


def test_judge_healthy_evidence_is_ok() -> None:
    outcome = judge(_evidence())
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK)
    assert outcome.details["container_id"] == CID
    assert outcome.figures["resolution_ratio"] == 1.0
    assert outcome.remediation == ""


@pytest.mark.parametrize(
    ("credentials", "shown"),
    [
        (Credentials(0, 0, 0), "PID 0"),
        (None, "no SCM_CREDENTIALS"),
        (Credentials(7, 0, 0), "PID 7"),
    ],
)
def test_judge_pid_zero(credentials: Credentials | None, shown: str) -> None:
    outcome = judge(_evidence(passcred=RoundTrip(4243, credentials, "@00001")))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.PID_ZERO)
    assert shown in outcome.message
    assert "runtimeClassName" in outcome.remediation


def test_judge_cgroup_v2_private_namespace_finds_itself_by_inode() -> None:
    outcome = judge(
        _evidence(own_cgroup="/", own_in_runtime=False, cgroup_ns_inode=4026532999, own_inode=7001)
    )
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK)
    assert f"found by inode ({CID[:12]})" in outcome.message


def test_judge_not_in_a_container_is_ok_with_a_note() -> None:
    outcome = judge(_evidence(own_cgroup="/user.slice/session-1.scope", own_in_runtime=False))
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK)
    assert "no container ID applies" in outcome.message


def test_judge_no_container_processes_sampled_publishes_no_ratio() -> None:
    outcome = judge(_evidence(sample=Sample(sampled=40)))
    assert outcome.status == Status.OK
    assert "resolution_ratio" not in outcome.figures
    assert outcome.figures["container_processes"] == 0


def test_judge_no_cgroup_hierarchy() -> None:
    outcome = judge(_evidence(cgroup_layout="none", cgroup_version=None, own_cgroup=None))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.NO_CONTAINER_ID)
    assert "no cgroup hierarchy" in outcome.message


def test_judge_inodes_past_a_capped_walk_are_unknown_not_unresolved() -> None:
    capped = InodeMap("/host/sys/fs/cgroup", {7001: CID}, {CID: 7001}, 8000, truncated=True)
    sample = replace(HEALTHY, inode_resolved=6, not_walked=4)
    outcome = judge(_evidence(inode_map=capped, sample=sample, client_enabled=True))
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK)
    assert outcome.figures["inode_resolution_ratio"] == 1.0
    assert "4 more unknown: the walk stopped at its cap" in outcome.message


def test_judge_reports_the_unified_order_and_external_data_as_not_provable() -> None:
    unified = judge(_evidence(unified=True, client_enabled=True, external_env=True))
    assert unified.details["resolution_order"] == [
        "uds", "client_container_id", "external_data", "entity_id", "external_data_pod",
    ]  # fmt: skip
    external = _mechanisms(unified)["external_data"]
    assert (external["configured"], external["enabled"]) == (True, True)
    assert "not provable here" in str(external["says"])
    assert unified.figures["external_data_configured"] == 1.0
    legacy = judge(_evidence())
    assert "External Data is not consulted" in str(legacy.details["resolution_order"])
    assert _mechanisms(legacy)["external_data"]["enabled"] is False


# --- over UDP: only the client-sent origins ---------------------------------------------------


def test_over_udp_the_uds_mechanism_is_not_enabled_and_clients_decide() -> None:
    """No DD_DOGSTATSD_SOCKET: applications send over UDP, which carries no credentials, so a
    broken hostPID fails nothing; the client mechanisms give the verdict."""
    outcome = judge(_evidence(**NO_HOST_PID, over_udp=True))
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK), outcome.message
    assert outcome.message.startswith("UDS origin detection does not apply: applications send")
    uds = _mechanisms(outcome)["uds"]
    assert (uds["status"], uds["reason"], uds["enabled"]) == ("skipped", "not_enabled", False)
    assert "mechanism_uds_ok" not in outcome.figures
    assert outcome.figures["mechanism_uds_enabled"] == 0.0
    broken = Sample(50, 10, 10, inode_resolved=0, id_found=10, id_recognised=10)
    failed = judge(_evidence(**NO_HOST_PID, over_udp=True, sample=broken))
    assert (failed.status, failed.reason) == (Status.FAILED, Reason.INODE_UNRESOLVED)


def test_over_udp_required_only_with_the_client_mechanisms() -> None:
    pod = {"SELFCHECK_CONTAINERIZED": "true", **REQUIRED}
    checks = {"origin_detection": SPEC}
    assert required_ids(make_config(pod), checks) == set()
    assert "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT is false" in SPEC.unused(make_config(pod))
    both = make_config(pod, DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT="true")
    assert required_ids(both, checks) == {"origin_detection"}
    uds = make_config(pod, DD_DOGSTATSD_SOCKET="/var/run/datadog/dsd.socket")
    assert required_ids(uds, checks) == {"origin_detection"}
