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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.arenas import glibc_heaps
from tests.support.node import Node, closed_port, machine
from tests.support.pod import DEFAULT_CAPS, HUNG, TMPFS, Spec, Volume, new_pod
from tests.support.standins import DogStatsDReceiver

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroups, mounts and chroot need root"),
]

CANARY = "selfcheck-canary-5b7f0e13d2"
DSD = "/var/run/datadog/dsd.socket"


@pytest.fixture
def node() -> Iterator[Node]:
    with machine() as n:
        yield n


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
    assert {r["check"]: r["view"] for r in report["checks"] if r["status"] != "skipped"} == {
        **{r["check"]: "agent" for r in report["checks"] if r["status"] != "skipped"},
        "agent_container": "own",  # it compares selfcheck's own container, as selfcheck
    }
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


def test_a_helper_reads_whether_the_agent_shares_its_network(node: Node) -> None:
    """A UID 100 Agent in a network namespace of its own, beside a root selfcheck: the helper
    path looks (it used to say ``shares_loopback: true`` without looking), and the Agent's
    127.0.0.1 expvar is not read from this one."""
    pod_uid = new_pod()
    agent = Spec(
        pod_uid,
        agent_volumes(node),
        env=agent_env(node),
        uid=100,
        gid=101,
        read_only_root=True,
        private_network=True,
    )
    node.pod.start_agent(agent)
    _, report = run_selfcheck(node, Spec(pod_uid, [], env={}, read_only_root=True))
    assert (report["view"]["helper"], report["view"]["shares_loopback"]) == (True, False)
    dogstatsd = next(r for r in report["checks"] if r["check"] == "dogstatsd_socket")
    assert dogstatsd["details"]["expvar"] == (
        "not read: the Agent's 127.0.0.1 is in another network namespace"
    )


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
    port = closed_port()
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
    theirs = [r for r in later["checks"] if r["status"] != "skipped"]
    assert {r["view"] for r in theirs if r["check"] != "agent_container"} == {"agent"}
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


def test_a_root_agent_without_capabilities_is_denied_what_the_sidecar_could_open(
    node: Node,
) -> None:
    """``capabilities: {drop: [ALL]}`` on a root Agent beside a sidecar with the runtime's
    default set: the node's os-release is mode 000, which only CAP_DAC_OVERRIDE opens. The
    verdict is the Agent's (denied), not the sidecar's (which would open it)."""
    sealed = node.pod.base / "os-release"
    sealed.write_text('ID=sealed\nPRETTY_NAME="Only CAP_DAC_OVERRIDE reads this"\n')
    sealed.chmod(0)
    volumes = _replaced(agent_volumes(node), "os-release-file", source=str(sealed))
    pod_uid = new_pod()
    agent = Spec(pod_uid, volumes, env=agent_env(node), read_only_root=True, caps=())
    node.pod.start_agent(agent)
    code, report = run_selfcheck(node, Spec(pod_uid, [], env={}, read_only_root=True))
    assert verdict(report, "os_release") == ("failed", "eacces", "agent"), report
    shown = report["view"]
    assert (shown["view"], shown["helper"], shown["as"]) == (
        "agent",
        True,
        "uid 0, gid 0, groups none",
    ), shown
    assert shown["capabilities"] == "no capabilities", shown
    assert code == 1  # os_release is optional: a failure that does not block readiness
    own = sidecar(node, pod_uid)
    own.volumes = volumes
    own.env["SELFCHECK_VIEW"] = "own"
    _, mine = run_selfcheck(node, own)
    assert verdict(mine, "os_release") == ("ok", "ok", "own"), mine


def test_verdicts_a_capability_selfcheck_lacks_could_change_are_marked(node: Node) -> None:
    """The Agent holds CAP_NET_ADMIN, which the sidecar lacks; the sidecar holds
    CAP_SYS_PTRACE as the Agent does, so the kernel lets it into the Agent's root anyway. The
    view names what is missing, and a failure made there (no os-release mount) says ``own``
    and names it, while a success stays the Agent's."""
    pod_uid = new_pod()
    both = (*DEFAULT_CAPS, "sys_ptrace")
    volumes = _without(agent_volumes(node), "os-release-file")
    agent = Spec(pod_uid, volumes, env=agent_env(node), caps=(*both, "net_admin"))
    node.pod.start_agent(agent)
    _, report = run_selfcheck(node, Spec(pod_uid, [], env={}, read_only_root=True, caps=both))
    shown = report["view"]
    assert (shown["view"], shown["helper"]) == ("agent", False), shown
    assert shown["capabilities_missing"] == ["CAP_NET_ADMIN"], shown
    release = next(r for r in report["checks"] if r["check"] == "os_release")
    assert (release["status"], release["reason"], release["view"]) == ("failed", "enoent", "own")
    assert release["details"]["capabilities_missing"] == ["CAP_NET_ADMIN"]
    assert verdict(report, "procfs") == ("ok", "ok", "agent")
    assert verdict(report, "security")[2] == "agent"  # the audit reads status: no access


RESTART_DRIVER = """
import json, os
from selfcheck.config import load
from selfcheck.model import Outcome, Reason, Status, ok
from selfcheck.registry import all_checks
from selfcheck.runner import Runner
from tests.support.fake_checks import spec

seen = []

def waits_for_the_restart(ctx):
    eyes = ctx.host.eyes
    seen.append(eyes.agent_pid)
    if len(seen) == 1:
        open("/gate/arrived", "w").close()
        with open("/gate/fifo") as gate:  # the test restarts the Agent, then writes
            gate.read()
    if not os.path.exists(f"{eyes.proc}/{eyes.agent_pid}"):
        return Outcome(Status.FAILED, Reason.IO_ERROR, f"pid {eyes.agent_pid} is gone", "-")
    return ok(f"pid {eyes.agent_pid} answers", details={"agent_pid": eyes.agent_pid})

checks = {**all_checks(), "restart": spec("restart", waits_for_the_restart)}
runner = Runner(load(frozenset(checks)), checks)
snapshot = runner.run_cycle(["restart", "os_release", "procfs"])
print(json.dumps({"status": snapshot.to_json(0.0, 1e9), "seen": seen}))
"""


def test_an_agent_restarted_mid_cycle_publishes_only_the_new_agents_verdicts(
    node: Node,
) -> None:
    """A cycle is pinned to one Agent process. Here a check of the test's own (the only
    way to hold a cycle open at an exact point) blocks until the test has restarted the
    Agent stand-in; its verdict on the half-gone Agent is ``failed``. That cycle must be
    discarded and run again at once against the new Agent: only its verdicts are published."""
    gate = node.pod.base / "gate"
    gate.mkdir()
    os.mkfifo(gate / "fifo")
    pod_uid = new_pod()
    agent = Spec(pod_uid, agent_volumes(node), env=agent_env(node), read_only_root=True)
    first = node.pod.start_agent(agent)
    mirrored = [v for v in agent_volumes(node) if v.name in ("procdir", "cgroups")]
    driver = Spec(
        pod_uid,
        [*mirrored, Volume("gate", str(gate), "/gate", read_only=False)],
        env={"SELFCHECK_CHECK_TIMEOUT": "60"},
        read_only_root=True,
    )
    running = node.pod.popen_python(driver, RESTART_DRIVER)
    _poll(lambda: (gate / "arrived").exists() or running.poll() is not None)
    node.pod.stop(first)
    second = node.pod.start_agent(agent)
    with (gate / "fifo").open("w") as release:
        release.write("restarted")
    out, err = running.communicate(timeout=120)
    assert running.returncode == 0, err[-3000:]
    body = json.loads(out)
    assert body["seen"] == [first, second], body["seen"]
    status = body["status"]
    assert status["view"]["agent_pid"] == second, status["view"]
    restart = next(r for r in status["checks"] if r["check"] == "restart")
    assert (restart["status"], restart["details"]["agent_pid"]) == ("ok", second), restart
    assert verdict(status, "os_release") == ("ok", "ok", "agent"), status


def _poll(done: Any, limit: float = 60.0) -> None:
    """Until ``done()``; the limit only ends a broken run."""
    end = time.monotonic() + limit
    while not done():
        assert time.monotonic() < end, "never happened"
        time.sleep(0.05)


def _server_children(pid: int, marker: bytes) -> list[int]:
    """The processes whose parent is ``pid`` and whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rpartition(")")[2].split()[1])
            if parent == pid and marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def _counting_agent(node: Node, port: int) -> str:
    """A UID-100 Agent whose DogStatsD socket counts what it parses (``SA_COUNT``): the
    stand-in of ``tests/support/agent_standin.py`` inside the ``agent run`` process, its
    expvar on ``port``."""
    pod_uid = new_pod()
    env = {**agent_env(node), "SA_DSD": "0", "SA_COUNT": "1", "DD_EXPVAR_PORT": str(port)}
    spec = Spec(pod_uid, agent_volumes(node), env=env, uid=100, gid=101, read_only_root=True)
    node.pod.start_agent(spec)
    return pod_uid


@pytest.mark.parametrize("mode", ["sidecar", "node"])
def test_a_uid_100_agent_gets_the_service_checks_and_its_listener_through_one_helper(
    node: Node, mode: str
) -> None:
    """A root selfcheck beside a UID-100 Agent: one long-lived helper holds the Agent's
    credentials (the same PID over five cycles, no ``DD_API_KEY`` in its environ, its threads
    and the server's in glibc's main arena: ``selfcheck.host.malloc``), sends one
    service check per check per cycle into the Agent's socket, whose receipt ``/status``
    shows, and reads the Agent's descriptors so ``agent_container`` names its listener."""
    expvar, listen = closed_port(), closed_port()
    pod_uid = _counting_agent(node, expvar)
    env = {
        "SELFCHECK_INTERVAL": "0.5",
        "SELFCHECK_LISTEN": f"127.0.0.1:{listen}",
        "DD_EXPVAR_PORT": str(expvar),
        "DD_API_KEY": CANARY,
    }
    if mode == "node":
        env["SELFCHECK_MODE"] = "node"
    else:
        env["DD_DOGSTATSD_SOCKET"] = DSD
    spec = Spec(pod_uid if mode == "sidecar" else new_pod(), [], env=env, read_only_root=True)
    server = node.pod.popen_selfcheck(spec, ["serve"])
    first = _status_when(listen, lambda body: body.get("generation", 0) >= 2)
    helpers = _server_children(server.pid, b"selfcheck.asagent_child")
    assert len(helpers) == 1, (helpers, first["view"])
    environ = Path(f"/proc/{helpers[0]}/environ").read_bytes()
    assert CANARY.encode() not in environ and b"DD_API_KEY" not in environ
    assert b"SELFCHECK_INTERVAL=0.5" in environ
    seen = set()
    generation = first["generation"]
    for _ in range(5):
        generation += 1
        body = _status_when(listen, lambda b, g=generation: b.get("generation", 0) >= g)
        seen.update(_server_children(server.pid, b"selfcheck.asagent_child"))
    assert seen == set(helpers), seen
    assert (glibc_heaps(server.pid), glibc_heaps(helpers[0])) == (0, 0)  # one arena each
    assert body["view"]["helper"] is True and body["view"]["as"] == "uid 100, gid 101, groups none"
    checks = {r["check"]: r for r in body["checks"]}
    delivered = checks["dogstatsd_socket"]["details"]["service_checks"]
    assert delivered["sent"] == len(checks) and delivered["dropped"] == 0, delivered
    assert delivered["receipt"] == "read", delivered
    assert delivered["service_check_packets_delta"] == len(checks), delivered
    assert checks["dogstatsd_socket"]["figures"]["service_check_receipt_ok"] == 1.0
    listeners = checks["agent_container"]["details"]["listeners"]
    assert listeners["dogstatsd"]["verdict"] == "agent", listeners
    assert "listeners: dogstatsd agent" in checks["agent_container"]["message"]
    server.terminate()


def test_a_check_hung_in_the_helper_is_named_and_the_others_kept(node: Node) -> None:
    """The Agent's os-release is on a mount that never answers: the helper's own runner
    abandons that one check at its deadline and answers before the server's longer one, so
    the report names it ``failed``/``timeout`` and keeps every other verdict, the Agent's."""
    volumes = _replaced(agent_volumes(node), "os-release-file", source=HUNG)
    pod_uid = new_pod()
    spec = Spec(pod_uid, volumes, env=agent_env(node), uid=100, gid=101, read_only_root=True)
    node.pod.start_agent(spec)
    bare = Spec(pod_uid, [], env={"SELFCHECK_CHECK_TIMEOUT": "2"}, read_only_root=True)
    code, report = run_selfcheck(node, bare)
    assert report["view"]["helper"] is True and report["view"]["view"] == "agent", report["view"]
    checks = {r["check"]: r for r in report["checks"]}
    hung = checks["os_release"]
    assert (hung["status"], hung["reason"], hung["view"]) == ("failed", "timeout", "agent")
    assert "os_release check did not finish within 2 s" in hung["message"]
    for cid in ("procfs", "cgroups", "dogstatsd_socket"):
        assert (checks[cid]["status"], checks[cid]["view"]) == ("ok", "agent"), checks[cid]
    assert (checks["runtime_socket"]["status"], checks["runtime_socket"]["reason"]) == (
        "failed",
        "eacces",
    )
    assert code == 2


def test_the_helper_keeps_its_stuck_check_across_cycles(node: Node) -> None:
    """The helper lives on with the hung check's thread: later cycles say it is still blocked
    and start no second copy of it, and no second helper starts either."""
    volumes = _replaced(agent_volumes(node), "os-release-file", source=HUNG)
    pod_uid = new_pod()
    spec = Spec(pod_uid, volumes, env=agent_env(node), uid=100, gid=101, read_only_root=True)
    node.pod.start_agent(spec)
    port = closed_port()
    env = {"SELFCHECK_CHECK_TIMEOUT": "1", "SELFCHECK_INTERVAL": "0.5"}
    env["SELFCHECK_LISTEN"] = f"127.0.0.1:{port}"
    server = node.pod.popen_selfcheck(Spec(pod_uid, [], env=env, read_only_root=True), ["serve"])

    def os_release(body: dict[str, Any]) -> dict[str, Any]:
        return next((r for r in body.get("checks", []) if r["check"] == "os_release"), {})

    later = _status_when(port, lambda b: "still blocked" in os_release(b).get("message", ""))
    hung = os_release(later)
    assert (hung["status"], hung["reason"], hung["view"]) == ("failed", "timeout", "agent")
    assert later["view"]["helper"] is True, later["view"]
    assert len(_server_children(server.pid, b"selfcheck.asagent_child")) == 1
    server.terminate()
