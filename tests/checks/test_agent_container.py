"""``agent_container`` against two real containers of one pod (tests/support/pod.py).

Each container is a real process in ``/kubepods/besteffort/pod<uid>/<id>`` cgroups, with its
own mount namespace and root, its identity and bounding set from ``setpriv``. The Agent is
played by a stand-in whose argv is ``agent run`` (the Agent binary cannot be had here); the
other container runs the real ``selfcheck``. Every drift below is made in the Agent's
container only, and the finding that names it is asserted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pod import DEFAULT_CAPS, Pod, Spec, Volume, chart_volumes, new_pod, pods
from tests.support.run import selfcheck
from tests.support.standins import free_port, stale_socket

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroups, mounts and chroot need root"),
]

CANARY = "selfcheck-canary-9d2e71a0c4"
DSD = "/var/run/datadog/dsd.socket"
SETTINGS = {"DD_DOGSTATSD_SOCKET": DSD, "DD_HEALTH_PORT": "5555", "DD_EXPVAR_PORT": "6000"}


@pytest.fixture
def pod() -> Iterator[Pod]:
    with pods() as made:
        dsd = made.base / "dsd"
        dsd.mkdir()
        dsd.chmod(0o755)
        yield made


def _dsd(pod: Pod) -> Path:
    return pod.base / "dsd"


def agent_spec(pod: Pod, pod_uid: str, **changes: Any) -> Spec:
    env = {**SETTINGS, "DD_API_KEY": CANARY, "SA_DSD": "1"}
    env.update(changes.pop("env", {}))
    return Spec(pod_uid, changes.pop("volumes", chart_volumes(_dsd(pod))), env=env, **changes)


def sidecar_spec(pod: Pod, pod_uid: str, **changes: Any) -> Spec:
    env = {**SETTINGS, **changes.pop("env", {})}
    return Spec(pod_uid, changes.pop("volumes", chart_volumes(_dsd(pod))), env=env, **changes)


def check(pod: Pod, spec: Spec, *extra: str) -> dict[str, Any]:
    done = pod.selfcheck(spec, ["check", "--json", "--only", "agent_container", *extra])
    assert CANARY not in done.stdout + done.stderr
    assert done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)["checks"][0]
    return result


def finding_ids(result: dict[str, Any]) -> set[str]:
    return {f["id"] for f in result.get("findings", [])}


def test_no_drift_is_ok_and_the_agent_holds_the_socket(pod: Pod) -> None:
    uid = new_pod()
    pid = pod.start_agent(agent_spec(pod, uid))
    result = check(pod, sidecar_spec(pod, uid))
    assert (result["status"], result["reason"]) == ("ok", "ok"), result
    details = result["details"]
    assert details["container"]["pid"] == pid
    assert details["container"]["pod_uid"] == uid
    assert details["listeners"]["dogstatsd"] == {
        "path": DSD,
        "verdict": "agent",
        "pid": pid,
        "role": "agent",
    }
    assert details["agent"]["mounts"]["procdir"] == "read-only"
    assert "DD_API_KEY" not in details["agent"]["config_names"]


def _without(volumes: list[Volume], name: str) -> list[Volume]:
    return [v for v in volumes if v.name != name]


def _writable(volumes: list[Volume], name: str) -> list[Volume]:
    return [Volume(v.name, v.source, v.target, False) if v.name == name else v for v in volumes]


DRIFTS: dict[str, tuple[dict[str, Any], set[str], str]] = {
    "user": (
        {"uid": 100, "gid": 101, "env": {"SA_DSD": "0"}},
        {"uid_drift", "gid_drift"},
        "uid: the Agent container has 100, the sidecar 0.",
    ),
    "capability": (
        {"caps": tuple(c for c in DEFAULT_CAPS if c != "net_raw")},
        {"capeff_drift", "capprm_drift", "capbnd_drift"},
        "CapEff: the sidecar has CAP_NET_RAW that the Agent container lacks.",
    ),
    "missing mount": (
        {"volumes": "no-procdir"},
        {"agent_procdir_missing", "agent_procdir_drift"},
        "The Agent container has no procdir mount at /host/proc.",
    ),
    "read-write mount": (
        {"volumes": "rw-cgroups"},
        {"agent_cgroups_writable", "agent_cgroups_drift"},
        "The Agent container mounts cgroups (/host/sys/fs/cgroup) read-write.",
    ),
    "DD_* value": (
        {"env": {"DD_HEALTH_PORT": "5599"}},
        {"env_drift"},
        "1 DD_* setting differs between the Agent container and the sidecar: DD_HEALTH_PORT;",
    ),
}


ONLY_NOTED = {"user", "capability", "DD_* value"}
"""Drift between the sidecar and an Agent whose root it can enter (with the Agent's
credentials where they differ): every verdict is the Agent's own, so it is an info note."""


@pytest.mark.parametrize("dimension", list(DRIFTS))
def test_each_drift_is_found_and_named(pod: Pod, dimension: str) -> None:
    changes, expected, sentence = DRIFTS[dimension]
    changes = dict(changes)
    volumes = chart_volumes(_dsd(pod))
    if changes.get("volumes") == "no-procdir":
        changes["volumes"] = _without(volumes, "procdir")
    elif changes.get("volumes") == "rw-cgroups":
        changes["volumes"] = _writable(volumes, "cgroups")
    uid = new_pod()
    pod.start_agent(agent_spec(pod, uid, **changes))
    result = check(pod, sidecar_spec(pod, uid))
    if dimension in ONLY_NOTED:
        # selfcheck sees through the Agent's own eyes: the sidecar's drift is only a note
        assert (result["status"], result["reason"]) == ("ok", "ok"), result
        assert {f["severity"] for f in result["findings"]} == {"info"}
    else:
        assert (result["status"], result["reason"]) == ("degraded", "drift"), json.dumps(result)
    ids = finding_ids(result)
    assert expected <= ids, ids
    messages = " ".join(f["message"] for f in result["findings"])
    assert sentence in messages
    assert "5599" not in json.dumps(result)  # drift names the variable, never its value
    for finding in result["findings"]:
        assert finding["remediation"]


def test_a_procdir_only_the_sidecar_has_is_caught(pod: Pod) -> None:
    """The sidecar has the mount and the Agent's container lacks it: procfs judges the Agent's
    (the hostPID fallback: degraded), and the drift is still named."""
    uid = new_pod()
    pod.start_agent(agent_spec(pod, uid, volumes=_without(chart_volumes(_dsd(pod)), "procdir")))
    done = pod.selfcheck(
        sidecar_spec(pod, uid), ["check", "--json", "--only", "procfs,agent_container"]
    )
    report = {r["check"]: r for r in json.loads(done.stdout)["checks"]}
    assert (report["procfs"]["status"], report["procfs"]["reason"]) == ("degraded", "enoent")
    assert report["procfs"]["view"] == "agent"
    drift = next(
        f for f in report["agent_container"]["findings"] if f["id"] == "agent_procdir_drift"
    )
    assert "absent in the Agent container but read-only in the sidecar" in drift["message"]


def test_agent_with_more_capabilities_cannot_be_read(pod: Pod) -> None:
    """A process cannot read the environ of one holding capabilities it lacks (ptrace rules)."""
    uid = new_pod()
    pod.start_agent(agent_spec(pod, uid, caps=(*DEFAULT_CAPS, "sys_ptrace")))
    result = check(pod, sidecar_spec(pod, uid))
    assert result["reason"] == "drift"
    assert "environ" in result["details"]["agent"]["unreadable"]
    assert "EACCES" in result["details"]["agent"]["unreadable"]["environ"]
    assert "CAP_SYS_PTRACE" in " ".join(f["message"] for f in result["findings"])
    assert result["details"]["listeners"]["dogstatsd"]["verdict"] == "unknown"


def test_an_unreadable_agent_is_eacces(pod: Pod) -> None:
    """Same identity, but the Agent's process is not dumpable: its environ and descriptors are
    closed to this container while its status and mount table stay readable."""
    uid = new_pod()
    pod.start_agent(agent_spec(pod, uid, env={"SA_UNDUMPABLE": "1"}))
    result = check(pod, sidecar_spec(pod, uid))
    assert (result["status"], result["reason"]) == ("degraded", "eacces"), result
    assert "environ" in result["message"]
    assert "findings" not in result


def test_stale_file_and_foreign_listener_are_not_the_agent(pod: Pod) -> None:
    uid = new_pod()
    pod.start_agent(agent_spec(pod, uid, env={"SA_DSD": "0"}))
    result = check(pod, sidecar_spec(pod, uid))
    assert result["details"]["listeners"]["dogstatsd"]["verdict"] == "not_listening"
    assert result["status"] == "ok"

    stale_socket(_dsd(pod) / "dsd.socket")
    result = check(pod, sidecar_spec(pod, uid))
    assert result["details"]["listeners"]["dogstatsd"]["verdict"] == "stale"
    assert "dogstatsd_listener_stale" in finding_ids(result)

    (_dsd(pod) / "dsd.socket").unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as foreign:
        foreign.bind(str(_dsd(pod) / "dsd.socket"))  # this test process, not the Agent
        result = check(pod, sidecar_spec(pod, uid))
    assert (result["status"], result["reason"]) == ("degraded", "foreign_listener")
    assert result["details"]["listeners"]["dogstatsd"]["verdict"] == "foreign"


def test_apm_socket_held_by_the_trace_agent(pod: Pod) -> None:
    uid = new_pod()
    apm = {"DD_APM_RECEIVER_SOCKET": "/var/run/datadog/apm.socket"}
    pod.start_agent(agent_spec(pod, uid, env=apm))
    trace = pod.start_agent(
        agent_spec(pod, uid, env={**apm, "SA_DSD": "0", "SA_APM": "1"}), argv=("trace-agent", "run")
    )
    result = check(pod, sidecar_spec(pod, uid, env=apm))
    assert result["status"] == "ok", result
    assert result["details"]["listeners"]["apm"]["verdict"] == "agent"
    assert result["details"]["listeners"]["apm"]["pid"] == trace
    assert {p["role"] for p in result["details"]["processes"]} == {"agent", "trace-agent"}


def test_private_cgroup_namespace_still_finds_the_pods_agent(pod: Pod) -> None:
    """In its own cgroup namespace the sidecar reads "/" and the Agent "/../<id>": siblings."""
    uid = new_pod()
    pid = pod.start_agent(agent_spec(pod, uid))
    result = check(pod, sidecar_spec(pod, uid, private_cgroupns=True))
    assert (result["status"], result["reason"]) == ("ok", "ok"), result
    assert result["details"]["container"]["pid"] == pid
    assert result["details"]["container"]["pod_uid"] is None  # not visible from inside


def test_other_pods_agent_is_not_this_pods(pod: Pod) -> None:
    pod.start_agent(agent_spec(pod, new_pod()))
    result = check(pod, sidecar_spec(pod, new_pod()))
    assert (result["status"], result["reason"]) == ("skipped", "not_found")
    required = check(
        pod, sidecar_spec(pod, new_pod(), env={"SELFCHECK_REQUIRE": "agent_container"})
    )
    assert (required["status"], required["reason"]) == ("degraded", "not_found")


@pytest.fixture
def node_pod() -> Iterator[Pod]:
    """Containers on a node of their own (a PID namespace standing for the node's): node mode
    sees no other suite's Agent stand-in running on this machine."""
    with pods(own_node=True) as made:
        _dsd(made).mkdir()
        _dsd(made).chmod(0o755)
        yield made


def test_node_mode_finds_the_agent_pod_and_judges_its_mounts(node_pod: Pod) -> None:
    """selfcheck in its own container outside the Agent's pod, with other mounts and env."""
    pod = node_pod
    uid = new_pod()
    volumes = _without(chart_volumes(_dsd(pod)), "cgroups")
    volumes = [v for v in volumes if v.name != "os-release-file"]  # the Operator's default
    pod.start_agent(agent_spec(pod, uid, volumes=volumes))
    mine = [v for v in chart_volumes(_dsd(pod)) if v.name not in ("passwd", "os-release-file")]
    node = Spec(
        "unused",
        mine,
        env={"SELFCHECK_MODE": "node", "DD_HEALTH_PORT": "1234"},
        cgroup_parent=f"selfcheck-node-{uid[:8]}",
    )
    result = check(pod, node)
    assert (result["status"], result["reason"]) == ("degraded", "drift"), json.dumps(result)
    assert result["details"]["mode"] == "node"
    assert result["details"]["container"]["pod_uid"] == uid
    assert finding_ids(result) == {"agent_cgroups_missing"}  # no identity or env comparison
    assert result["details"]["listeners"]["dogstatsd"]["verdict"] == "agent"


def test_no_host_pid_namespace_is_not_applicable() -> None:
    done = selfcheck(
        ["check", "--json", "--only", "agent_container"],
        prefix=("unshare", "--pid", "--fork", "--mount-proc"),
    )
    result = json.loads(done.stdout)["checks"][0]
    assert (result["status"], result["reason"]) == ("skipped", "not_applicable"), result
    assert "no hostPID" in result["message"]
    assert done.code == 0


def _get(url: str) -> str:
    """The body, also of a 503 (this machine has no Agent, so required checks fail)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as error:
        return str(error.read().decode())


def test_the_api_key_never_leaves_the_agents_environ(pod: Pod) -> None:
    """Every surface, with the Agent readable (ok) and unreadable (another user: EACCES)."""
    uid = new_pod()
    pod.start_agent(agent_spec(pod, uid))
    pod.start_agent(
        agent_spec(pod, uid, uid=100, gid=101, env={"SA_DSD": "0"}), argv=("process-agent", "run")
    )
    for args in (["check", "--json"], ["check", "--verbose"], ["check"], ["list"]):
        done = pod.selfcheck(sidecar_spec(pod, uid), args)
        assert done.returncode in (0, 1, 2), done.stderr
        assert CANARY not in done.stdout + done.stderr
    with free_port() as port:
        env = {"SELFCHECK_LISTEN": f"127.0.0.1:{port}", "SELFCHECK_INTERVAL": "0.5"}
        server = pod.popen_selfcheck(sidecar_spec(pod, uid, env=env), ["serve"])
        try:
            body = _wait_for(f"http://127.0.0.1:{port}/status")
            assert '"agent_container"' in body
            seen = body + _get(f"http://127.0.0.1:{port}/metrics")
            seen += _get(f"http://127.0.0.1:{port}/readyz?verbose")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            out, err = server.communicate(timeout=15)
    assert 'check="agent_container"' in seen
    assert CANARY not in seen + out + err
    assert err  # the server logged lines, none of them with the key


def _wait_for(url: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            body = _get(url)
            if '"agent_container"' in body:
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_the_agents_own_values_decide_what_is_required(pod: Pod) -> None:
    """The Agent runs with origin detection and logs on; the sidecar's copy of its env lacks
    them. What gates readiness follows the Agent's real configuration, and says so."""
    uid = new_pod()
    pod.start_agent(
        agent_spec(pod, uid, env={"DD_DOGSTATSD_ORIGIN_DETECTION": "true", "DD_LOGS_ENABLED": "1"})
    )
    listed = pod.selfcheck(sidecar_spec(pod, uid), ["list"])
    assert listed.returncode == 0, listed.stderr
    rows: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        if line and not line[0].isspace():
            current = line.split()[0]
            rows[current] = line
        elif line.strip():
            rows[current] += " " + line.strip()  # the why, wrapped under the row
    for cid in ("origin_detection", "pod_logs"):
        assert rows[cid].split()[1] == "required", rows[cid]
        assert "per the Agent's own environment" in rows[cid], rows[cid]
    assert CANARY not in listed.stdout + listed.stderr
    alone = selfcheck(["list"], {"HOST_PROC": "/proc"})
    assert (
        next(
            line for line in alone.stdout.splitlines() if line.startswith("origin_detection")
        ).split()[1]
        == "optional"
    )


def test_no_pod_is_named_where_there_is_none() -> None:
    """On a bare machine (the README's first command on a VM) there is no pod to speak of."""
    run = selfcheck(
        ["check", "--only", "agent_container", "--json"],
        {"HOST_PROC": "/proc", "SELFCHECK_CONTAINERIZED": "false"},
    )
    result = run.check("agent_container")
    assert (result["status"], result["reason"]) == ("skipped", "not_found")
    assert "on this machine" in result["message"] and "pod" not in result["message"]
