"""Whose view: every verdict is the Agent container's, in the sidecar and in node mode alike.

Each row of ``FAULTS`` is made in the Agent's container only, in real containers of
``tests/support/pod.py`` (cgroups under ``kubepods/besteffort/pod<uid>``, a mount namespace and
root of their own, the identity ``setpriv`` gives). The Agent is played by a stand-in whose argv
is ``agent run`` (the Agent binary cannot be had here); it binds the DogStatsD socket where its
mounts put it. selfcheck runs twice per row: as the sidecar of the manifests (the Agent's mount
table mirrored, the fallback) in the same pod, and in node mode in a pod of its own under
another ``pod<uid>`` parent with no host volume at all (``k8s/node``). Both must name the
same check, status and reason, and exit alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.pod import DEFAULT_CAPS, TMPFS, Pod, Spec, Volume, new_pod, pods
from tests.support.standins import AgentHTTPStandIn, DockerStandIn, DogStatsDReceiver

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroups, mounts and chroot need root"),
]

CANARY = "selfcheck-canary-5b7f0e13d2"
DSD = "/var/run/datadog/dsd.socket"


@dataclass
class Node:
    """One machine's worth of node state: the socket directory, the runtime, the health port."""

    pod: Pod
    health: AgentHTTPStandIn
    closed_port: int

    @property
    def dsd_dir(self) -> Path:
        return self.pod.base / "dsd"

    @property
    def run_dir(self) -> Path:
        return self.pod.base / "run"


def _closed_port() -> int:
    """A loopback port nothing listens on: the Agent's expvar, not run by the stand-in."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def node() -> Iterator[Node]:
    with pods() as pod, AgentHTTPStandIn() as health, contextlib.ExitStack() as stack:
        for name in ("dsd", "run"):
            (pod.base / name).mkdir()
        (pod.base / "dsd").chmod(0o1777)
        (pod.base / "run").chmod(0o755)
        stack.enter_context(DockerStandIn(pod.base / "run" / "docker.sock"))
        yield Node(pod, health, _closed_port())


def agent_volumes(node: Node) -> list[Volume]:
    """The chart's table (procdir, cgroups, os-release, dsdsocket, passwd, runtimesocketdir),
    cgroups recursively read-only as k8s/ mounts it (on this cgroup v1 machine the chart's
    plain readOnly leaves the controllers writable: a warning of its own)."""
    return [
        Volume("procdir", None, "/host/proc"),
        Volume("cgroups", "/sys/fs/cgroup", "/host/sys/fs/cgroup", recursive_read_only=True),
        Volume("os-release-file", "/etc/os-release", "/host/etc/os-release"),
        Volume("dsdsocket", str(node.dsd_dir), "/var/run/datadog", read_only=False),
        Volume("passwd", "/etc/passwd", "/etc/passwd"),
        Volume("runtimesocketdir", str(node.run_dir), "/host/var/run"),
    ]


def agent_env(node: Node) -> dict[str, str]:
    return {
        "DD_DOGSTATSD_SOCKET": DSD,
        "DD_HEALTH_PORT": str(node.health.port),
        "DD_EXPVAR_PORT": str(node.closed_port),
        "DOCKER_HOST": "unix:///host/var/run/docker.sock",
        "DD_DOGSTATSD_ORIGIN_DETECTION": "true",
        "DD_API_KEY": CANARY,
        "SA_DSD": "1",
    }


def _without(volumes: list[Volume], name: str) -> list[Volume]:
    return [v for v in volumes if v.name != name]


def _replaced(volumes: list[Volume], name: str, **change: Any) -> list[Volume]:
    return [Volume(**{**v.__dict__, **change}) if v.name == name else v for v in volumes]


def _faulty(node: Node, fault: str) -> dict[str, Any]:
    """The Agent container's Spec arguments for one fault."""
    volumes = agent_volumes(node)
    if fault == "no procdir":
        return {"volumes": _without(volumes, "procdir")}
    if fault == "no cgroups":
        return {"volumes": _without(volumes, "cgroups")}
    if fault == "uid 100 without the runtime group":
        return {"uid": 100, "gid": 101}
    if fault == "socket in a private directory":
        return {"volumes": _replaced(volumes, "dsdsocket", source=TMPFS)}
    if fault == "writable procdir":
        return {"volumes": _replaced(volumes, "procdir", read_only=False)}
    if fault == "CAP_SYS_PTRACE":
        return {"caps": (*DEFAULT_CAPS, "sys_ptrace")}
    return {}


FAULTS: dict[str, tuple[str, str, str, int]] = {
    "healthy": ("runtime_socket", "ok", "ok", 0),
    "no procdir": ("origin_detection", "failed", "procfs_missing", 2),
    "no cgroups": ("cgroups", "failed", "enoent", 2),
    "uid 100 without the runtime group": ("runtime_socket", "failed", "eacces", 2),
    "socket in a private directory": ("dogstatsd_socket", "failed", "not_shared", 2),
    "writable procdir": ("security", "degraded", "findings", 1),
    "CAP_SYS_PTRACE": ("security", "degraded", "critical_findings", 1),
}


def start_agent(node: Node, fault: str, pod_uid: str | None = None) -> str:
    uid = pod_uid or new_pod()
    changes = _faulty(node, fault)
    volumes = changes.pop("volumes", agent_volumes(node))
    node.pod.start_agent(Spec(uid, volumes, env=agent_env(node), read_only_root=True, **changes))
    return uid


def run_selfcheck(node: Node, spec: Spec) -> tuple[int, dict[str, Any]]:
    done = node.pod.selfcheck(spec, ["check", "--json"])
    assert CANARY not in done.stdout + done.stderr
    assert done.stdout, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def sidecar(node: Node, pod_uid: str) -> Spec:
    """The manifests' sidecar: the Agent's mount table mirrored, the healthy one's env."""
    env = {k: v for k, v in agent_env(node).items() if k.startswith("DD_") and k != "DD_API_KEY"}
    return Spec(pod_uid, agent_volumes(node), env=env, read_only_root=True)


def node_mode(node: Node) -> Spec:
    """``k8s/node``: a pod of its own, hostPID, no host volume, the Agent's default identity."""
    return Spec(new_pod(), [], env={"SELFCHECK_MODE": "node"}, read_only_root=True)


def verdict(report: dict[str, Any], cid: str) -> tuple[str, str, str]:
    found = next(r for r in report["checks"] if r["check"] == cid)
    return found["status"], found["reason"], found["view"]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_sidecar_and_node_mode_name_the_agents_fault_alike(node: Node, fault: str) -> None:
    cid, status, reason, code = FAULTS[fault]
    pod_uid = start_agent(node, fault)
    side_code, side = run_selfcheck(node, sidecar(node, pod_uid))
    node_code, alone = run_selfcheck(node, node_mode(node))
    assert verdict(side, cid) == verdict(alone, cid) == (status, reason, "agent"), (side, alone)
    assert (side_code, node_code) == (code, code), (side, alone)


def test_a_sidecar_without_host_mounts_beside_a_healthy_agent_is_ok(node: Node) -> None:
    pod_uid = start_agent(node, "healthy")
    bare = Spec(pod_uid, [], env={}, read_only_root=True)
    code, report = run_selfcheck(node, bare)
    shown = {r["check"]: (r["status"], r["reason"]) for r in report["checks"]}
    assert code == 0, json.dumps([r for r in report["checks"] if r["status"] != "ok"])
    assert report["view"]["view"] == "agent"
    assert all(r["view"] == "agent" for r in report["checks"] if r["status"] != "skipped")
    for cid in ("procfs", "cgroups", "runtime_socket", "dogstatsd_socket", "origin_detection"):
        assert shown[cid] == ("ok", "ok"), shown


def test_a_root_selfcheck_takes_a_uid_100_agents_identity(node: Node) -> None:
    """The helper holds exactly the Agent's credentials: the report says so, and the runtime
    socket (root 0660) refuses it as it refuses the Agent."""
    pod_uid = start_agent(node, "uid 100 without the runtime group")
    code, report = run_selfcheck(node, Spec(pod_uid, [], env={}, read_only_root=True))
    assert report["view"]["view"] == "agent" and report["view"]["helper"] is True
    assert report["view"]["as"] == "uid 100, gid 101, groups none"
    runtime = next(r for r in report["checks"] if r["check"] == "runtime_socket")
    assert (runtime["status"], runtime["reason"]) == ("failed", "eacces")
    assert "uid 100, gid 101" in runtime["message"]
    assert code == 2


def test_an_agent_it_cannot_enter_gives_the_own_view_with_why(node: Node) -> None:
    pod_uid = start_agent(node, "CAP_SYS_PTRACE")
    code, report = run_selfcheck(node, sidecar(node, pod_uid))
    assert report["view"]["view"] == "own"
    assert "cannot enter the Agent's root" in report["view"]["why"]
    assert "EACCES" in report["view"]["why"]
    procfs = next(r for r in report["checks"] if r["check"] == "procfs")
    assert (procfs["status"], procfs["view"]) == ("ok", "own")
    assert code == 1


def test_a_sidecar_started_before_its_agent_switches_to_the_agents_view(node: Node) -> None:
    """Ready on its own view first (its mirrored mounts pass: a DogStatsD listener already
    answers in the node's directory), the Agent's view within an interval of the Agent."""
    pod_uid = new_pod()
    listener = DogStatsDReceiver(node.dsd_dir / "dsd.socket").__enter__()
    spec = sidecar(node, pod_uid)
    port = _closed_port()
    spec.env.update({"SELFCHECK_INTERVAL": "0.5", "SELFCHECK_LISTEN": f"127.0.0.1:{port}"})
    serving = node.pod.popen_selfcheck(spec, ["serve"])
    first = _status_when(port, lambda body: body.get("generation", 0) >= 1)
    assert first["view"]["view"] == "own", first["view"]
    assert first["ready"] is True, first
    start_agent(node, "healthy", pod_uid)
    started = _status_when(port, lambda body: True)["generation"]
    later = _status_when(port, lambda body: body.get("view", {}).get("view") == "agent")
    # the cycle under way when the Agent started may have looked before it; the next sees it
    assert later["generation"] <= started + 2, (started, later["generation"])
    assert {r["view"] for r in later["checks"] if r["status"] != "skipped"} == {"agent"}
    serving.terminate()
    listener.__exit__()


def _status_when(port: int, wanted: Any, limit: float = 20.0) -> dict[str, Any]:
    """Polls ``/status`` until ``wanted(body)``; the limit only ends a broken run."""
    import urllib.request

    end = time.monotonic() + limit
    body: dict[str, Any] = {}
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as reply:
                body = json.loads(reply.read())
            if wanted(body):
                return body
        time.sleep(0.1)
    raise AssertionError(f"/status never showed it: {json.dumps(body)[:2000]}")
