"""origin_detection: real namespaces, real cgroups and real containers of a real dockerd.

What is real here: the kernel's SO_PASSCRED answers, ``unshare`` namespaces, cgroups made
on this machine's own hierarchy, and containers started by the session's ``dockerd`` from
a locally imported busybox image. The Python that runs inside those containers is this
machine's own interpreter and this work tree, bind-mounted read-only (no image can be
pulled here). Only the judge tests feed fixed evidence, for kernel answers that cannot be
provoked on a healthy machine (PID 0 from our own child, a cgroup v2 host).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from selfcheck.checks import origin_detection
from selfcheck.checks.origin_detection.judges import SAMPLE_THRESHOLD
from selfcheck.context import CheckContext
from selfcheck.host.cgroup import detect_layout
from selfcheck.host.namespaces import INITIAL_PID_NS_INODE
from selfcheck.host.procfs import read_mountinfo
from selfcheck.model import Reason, Status
from tests.support.configs import make_config, settled
from tests.support.daemons import DockerDaemon
from tests.support.run import AS_AGENT_USER, REPO, Run, in_shell, selfcheck
from tests.support.standins import agent_standin, private_loopback

CID = "4f1c2b9d8e7a6f5c4b3a29180f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6"
ONLY = ["check", "--only", "origin_detection", "--json"]
UDS = "/var/run/datadog/dsd.socket"
REQUIRED = {"DD_DOGSTATSD_ORIGIN_DETECTION": "true", "DD_DOGSTATSD_SOCKET": UDS}
"""The chart's: origin detection on, and applications given the socket (UDS on)."""


def _check(run: Run) -> dict[str, Any]:
    return run.check("origin_detection")


# --- this machine, as it is ------------------------------------------------------------------


def test_ok_in_this_machines_own_pid_namespace() -> None:
    run = selfcheck(ONLY, {"HOST_PROC": "/proc", **REQUIRED})
    result = _check(run)
    assert (result["status"], result["reason"]) == ("ok", "ok"), run.stdout
    assert run.code == 0
    assert result["required"] is True
    details = result["details"]
    assert isinstance(details, dict)
    assert details["nspid"] == [details["host_pid"]]
    assert details["passcred_received_pid"] == details["passcred_sender_pid"] != 0
    inode = os.stat("/proc/self/ns/pid").st_ino
    assert details["pid_namespace_inode"] == inode
    assert details["initial_pid_namespace"] is (inode == INITIAL_PID_NS_INODE)
    figures = result["figures"]
    assert isinstance(figures, dict)
    assert figures["sampled_processes"] > 3


@pytest.mark.root
def test_ok_as_the_agents_non_root_user() -> None:
    run = selfcheck(ONLY, {"HOST_PROC": "/proc", **REQUIRED}, prefix=AS_AGENT_USER)
    result = _check(run)
    assert (result["status"], result["reason"]) == ("ok", "ok"), run.stdout + run.stderr
    details = result["details"]
    assert isinstance(details, dict)
    assert details["passcred_received_pid"] == details["passcred_sender_pid"] != 0


def test_optional_unless_the_agent_enables_origin_detection() -> None:
    listed = selfcheck(["list"], {"HOST_PROC": "/proc"}).stdout
    assert "origin_detection  optional" in listed
    listed = selfcheck(["list"], {"HOST_PROC": "/proc", **REQUIRED}).stdout
    assert "DD_DOGSTATSD_ORIGIN_DETECTION is true" in listed


def test_sample_is_bounded_by_selfcheck_sample() -> None:
    run = selfcheck(ONLY, {"HOST_PROC": "/proc", "SELFCHECK_SAMPLE": "2"})
    figures = _check(run)["figures"]
    assert isinstance(figures, dict)
    assert figures["sampled_processes"] == 2


def test_explain_walks_through_each_step_and_reason() -> None:
    run = selfcheck(["explain", "origin_detection"])
    assert run.code == 0
    for step in (
        "Step 1", "Step 2", "Step 3", "Step 4", "NSpid", "SO_PASSCRED", "crio-conmon-",
        "client_inode", "client_container_id", "receipt", "5000, then 6000",
    ):  # fmt: skip
        assert step in " ".join(run.stdout.split()), step
    for reason in (
        "procfs_missing",
        "not_host_pid",
        "pid_zero",
        "no_container_id",
        "inode_unresolved",
        "not_received",
    ):
        assert f"  {reason}: " in run.stdout, reason
    assert "selfcheck_origin_detection_resolution_ratio" in run.stdout
    assert "datadog.useHostPID" in " ".join(run.stdout.split())


# --- /host/proc missing ------------------------------------------------------------------------


def test_procfs_missing_when_host_proc_is_absent(tmp_path: Path) -> None:
    run = selfcheck(ONLY, {"HOST_PROC": str(tmp_path / "absent"), **REQUIRED})
    result = _check(run)
    assert (result["status"], result["reason"]) == ("failed", "procfs_missing")
    assert run.code == 2
    assert "procdir" in str(result["remediation"])


def test_procfs_missing_when_a_plain_directory_stands_in(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    client_only = {"DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT": "true"}  # enabled, not required
    run = selfcheck(ONLY, {"HOST_PROC": str(tmp_path), **client_only})
    result = _check(run)
    assert (result["status"], result["reason"]) == ("failed", "procfs_missing")
    assert run.code == 1  # optional: reported, not gating


@pytest.mark.root
def test_unreadable_host_proc_is_eacces_for_the_agent_user(open_tmp: Path) -> None:
    locked = open_tmp / "proc"
    locked.mkdir(mode=0o000)
    run = selfcheck(ONLY, {"HOST_PROC": str(locked), **REQUIRED}, prefix=AS_AGENT_USER)
    result = _check(run)
    assert (result["status"], result["reason"]) == ("failed", "eacces"), run.stdout
    assert "(EACCES)" in str(result["message"])
    assert "runAsUser" in str(result["remediation"])


@pytest.mark.skipif(Path("/host/proc").exists(), reason="this machine has a /host/proc")
def test_procfs_missing_in_a_pod_without_the_procdir_mount() -> None:
    """In a container the Agent wants /host/proc itself, even though /proc would answer."""
    run = selfcheck(ONLY, {"KUBERNETES_SERVICE_HOST": "10.96.0.1", **REQUIRED})
    result = _check(run)
    assert (result["status"], result["reason"]) == ("failed", "procfs_missing")
    assert "/host/proc does not exist" in str(result["message"])


# --- other PID namespaces (unshare) ------------------------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize(("env", "code"), [(REQUIRED, 2), ({}, 0)])
def test_not_host_pid_in_a_new_pid_namespace(
    tmp_path: Path, env: dict[str, str], code: int
) -> None:
    """The pod without hostPID: the machine's real /proc as host procfs, us in a child namespace.

    With origin detection off in the Agent nothing is lost: skipped (not_enabled), and the
    message leads with the verdict it would get.
    """
    run = in_shell(
        f"unshare -m --propagation private sh -c 'mount --bind /proc {tmp_path} && "
        f"exec unshare --pid --fork --mount-proc $SELFCHECK {' '.join(ONLY)}'",
        {"HOST_PROC": str(tmp_path), **env},
    )
    result = _check(run)
    assert run.code == code, run.stdout
    uds = result["details"]["mechanisms"]["uds"]
    assert (uds["status"], uds["reason"], uds["enabled"]) == ("failed", "not_host_pid", bool(env))
    expected = ("failed", "not_host_pid") if env else ("skipped", "not_enabled")
    assert (result["status"], result["reason"]) == expected, run.stdout
    details = result["details"]
    assert len(details["nspid"]) == 2
    assert details["initial_pid_namespace"] is False
    assert "NSpid" in str(result["message"])
    if env:
        assert "hostPID: true" in str(result["remediation"])
    else:
        assert "not enabled in the Agent" in str(result["message"])
        assert "the verdict would be failed (not_host_pid)" in str(result["message"])


@pytest.mark.root
def test_not_host_pid_when_host_proc_belongs_to_a_namespace_below(tmp_path: Path) -> None:
    """A procdir that is some pod's procfs: this process is invisible there."""
    run = in_shell(
        "unshare -m --propagation private sh -euc '"
        f'unshare --pid --fork --kill-child sh -c "mount -t proc proc {tmp_path} && exec sleep 30"'
        ' </dev/null >/dev/null 2>&1 & child=$!; trap "kill -KILL $child" EXIT; '
        f"for i in $(seq 200); do [ -e {tmp_path}/1 ] && break; sleep 0.05; done; "
        f"$SELFCHECK {' '.join(ONLY)}'",
        {"HOST_PROC": str(tmp_path), **REQUIRED},
    )
    result = _check(run)
    assert (result["status"], result["reason"]) == ("failed", "not_host_pid"), run.stdout
    assert "invisible" in str(result["message"])
    assert "(ENOENT)" in str(result["message"])


@pytest.mark.root
def test_private_cgroup_namespace_is_ok_with_a_note() -> None:
    """A private cgroup namespace: the cgroups check finds its own cgroup by inode there;
    this check agrees."""
    run = in_shell(
        f"exec unshare --cgroup $SELFCHECK {' '.join(ONLY)}", {"HOST_PROC": "/proc", **REQUIRED}
    )
    result = _check(run)
    assert (result["status"], result["reason"]) == ("ok", "ok"), run.stdout
    assert run.code == 0
    details = result["details"]
    assert isinstance(details, dict)
    assert details["own_cgroup"] == "/"
    assert details["initial_cgroup_namespace"] is False
    assert "private cgroup namespace" in str(result["message"])


# --- real cgroups on this machine --------------------------------------------------------------


@dataclass
class Cgroup:
    """A cgroup made for a test on the hierarchy the Agent reads (memory on v1, unified on v2)."""

    directory: Path
    path: str

    def enter_and_exec(self) -> str:
        """Shell words that move the shell into this cgroup, then ``exec`` what follows."""
        return f"echo $$ > {self.directory}/cgroup.procs && exec"


def _agent_hierarchy() -> Path:
    layout = detect_layout(read_mountinfo(), "/sys/fs/cgroup")
    if layout.agent_version == 1:
        memory = layout.v1_controllers.get("memory")
        if memory is None:
            pytest.skip("no memory controller mounted under /sys/fs/cgroup")
        return Path(memory)
    if layout.v2_mount is None:
        pytest.skip("no cgroup hierarchy mounted under /sys/fs/cgroup")
    return Path(layout.v2_mount)


@pytest.fixture
def pod_cgroup() -> Iterator[Cgroup]:
    """``/kubepods-selfcheck-<rand>/pod<uid>``: a pod-level cgroup, which has no container ID."""
    top = _agent_hierarchy() / f"kubepods-selfcheck-{secrets.token_hex(4)}"
    leaf = top / "pod3b6f29b1-8d5c-4f0e-9a43-1c2d7e8f9a0b"
    leaf.mkdir(parents=True)
    try:
        yield Cgroup(leaf, "/" + str(leaf.relative_to(_agent_hierarchy())))
    finally:
        for directory in (leaf, top):
            for _ in range(100):
                try:
                    directory.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


@pytest.mark.root
def test_own_cgroup_without_a_container_id_fails(pod_cgroup: Cgroup) -> None:
    run = in_shell(
        f"{pod_cgroup.enter_and_exec()} $SELFCHECK {' '.join(ONLY)}",
        # A bare machine's process placed in a pod cgroup: not a container (no /host/proc).
        {"HOST_PROC": "/proc", "SELFCHECK_CONTAINERIZED": "false", **REQUIRED},
    )
    result = _check(run)
    assert (result["status"], result["reason"]) == ("failed", "no_container_id"), run.stdout
    assert run.code == 2
    details = result["details"]
    assert isinstance(details, dict)
    assert details["own_cgroup"] == pod_cgroup.path
    assert details["container_id"] is None
    assert "memory line on cgroup v1" in str(result["remediation"])


@pytest.mark.root
def test_own_container_id_comes_from_the_last_element() -> None:
    hierarchy = _agent_hierarchy()
    directory = hierarchy / f"selfcheck-{secrets.token_hex(4)}"
    leaf = directory / CID
    leaf.mkdir(parents=True)
    try:
        run = in_shell(
            f"echo $$ > {leaf}/cgroup.procs && exec $SELFCHECK {' '.join(ONLY)}",
            {"HOST_PROC": "/proc", "SELFCHECK_CONTAINERIZED": "false", **REQUIRED},
        )
    finally:
        leaf.rmdir()
        directory.rmdir()
    result = _check(run)
    assert (result["status"], result["reason"]) == ("ok", "ok"), run.stdout
    details = result["details"]
    assert isinstance(details, dict)
    assert details["container_id"] == CID
    assert CID[:12] in str(result["message"])


@pytest.mark.root
def test_container_processes_that_do_not_resolve_degrade_the_check(pod_cgroup: Cgroup) -> None:
    """Five processes in a pod-level cgroup; the machine must have fewer than 45 that resolve."""
    sleepers = [
        subprocess.Popen(
            ["sh", "-c", f"{pod_cgroup.enter_and_exec()} sleep 60"], stdout=subprocess.DEVNULL
        )
        for _ in range(5)
    ]
    try:
        deadline = time.monotonic() + 10
        procs = pod_cgroup.directory / "cgroup.procs"
        while len(procs.read_text().split()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        run = selfcheck(ONLY, {"HOST_PROC": "/proc", "SELFCHECK_SAMPLE": "100000", **REQUIRED})
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait(10)
    result = _check(run)
    figures, details = result["figures"], result["details"]
    assert isinstance(figures, dict) and isinstance(details, dict)
    assert figures["container_processes"] - details["resolved_processes"] >= 5
    assert figures["resolution_ratio"] < SAMPLE_THRESHOLD
    assert (result["status"], result["reason"]) == ("degraded", "no_container_id"), run.stdout
    assert run.code == 1


def test_run_uses_the_configuration() -> None:
    config = make_config(
        HOST_PROC="/proc", SELFCHECK_SAMPLE=3, DD_DOGSTATSD_ORIGIN_DETECTION="true"
    )
    outcome = origin_detection.run(CheckContext.of(config))
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK)
    assert outcome.figures["sampled_processes"] == 3


@pytest.mark.parametrize("client", ["false", "true"])
def test_origin_detection_on_is_judged_as_today(client: str) -> None:
    """Either setting enables it: the verdict is the node's, never skipped."""
    env = {"HOST_PROC": "/proc", "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT": client}
    if client == "false":
        env["DD_DOGSTATSD_ORIGIN_DETECTION"] = "true"
    outcome = origin_detection.run(CheckContext.of(make_config(env)))
    assert outcome.status == Status.OK and outcome.reason == Reason.OK


def test_origin_detection_off_is_skipped_with_the_would_be_verdict() -> None:
    """Both settings off: the Agent tags nothing by origin, so nothing is lost and nothing is
    proven ok: skipped/not_enabled, like pod_logs with logs off, the verdict in the message."""
    env = {
        "HOST_PROC": "/proc",
        "DD_DOGSTATSD_ORIGIN_DETECTION": "false",
        "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT": "false",
    }
    outcome = settled(origin_detection.SPEC, CheckContext.of(make_config(env)))
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, Reason.NOT_ENABLED)
    assert outcome.message.startswith("origin detection is not enabled in the Agent")
    assert "if it were, the verdict would be ok: " in outcome.message
    assert outcome.details["would_be"] == ["ok", "ok"]


def test_origin_detection_off_without_host_proc_is_still_skipped(tmp_path: Path) -> None:
    """A missing /host/proc would fail it (procfs_missing): off, that is the would-be verdict."""
    env = {"HOST_PROC": str(tmp_path / "missing"), "SELFCHECK_CONTAINERIZED": "false"}
    outcome = settled(origin_detection.SPEC, CheckContext.of(make_config(env)))
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, Reason.NOT_ENABLED)
    assert "the verdict would be failed (procfs_missing)" in outcome.message


# --- real containers from a real dockerd -------------------------------------------------------

RECEIVER = """
import json, sys
from pathlib import Path
from typing import Any
from selfcheck.host.cgroup import (
    agent_cgroup_path, container_id_from_path, detect_layout, parse_proc_cgroup, read_proc_cgroup,
)
from selfcheck.host.passcred import open_receiver, receive
from selfcheck.host.procfs import read_mountinfo
with open_receiver(b"\\0" + sys.argv[1].encode()) as sock:
    print("ready", flush=True)
    creds = receive(sock, sys.argv[2].encode(), 60)
layout = detect_layout(read_mountinfo(), "/host/sys/fs/cgroup")
cid = None
if creds is not None and creds.pid:
    lines = parse_proc_cgroup(read_proc_cgroup(Path("/host/proc"), creds.pid))
    path = agent_cgroup_path(lines, layout.agent_version)
    cid = container_id_from_path(path) if path is not None else None
print(json.dumps({"pid": None if creds is None else creds.pid, "container_id": cid,
                  "layout": layout.version}), flush=True)
"""

SENDER = """
import sys, time
from selfcheck.host.passcred import send
send(b"\\0" + sys.argv[1].encode(), sys.argv[2].encode())
time.sleep(60)
"""


def _python_mounts() -> list[str]:
    """This machine's interpreter, its shared libraries and the work tree, read-only."""
    mounts: list[str] = ["-v", "/usr:/usr:ro"]
    for lib in ("/lib", "/lib64"):
        if Path(lib).exists():
            mounts += ["-v", f"{os.path.realpath(lib)}:{lib}:ro"]
    for path in {sys.base_prefix, sys.prefix, str(REPO)}:
        if not path.startswith("/usr/"):
            mounts += ["-v", f"{path}:{path}:ro"]
    return [*mounts, "-e", f"PYTHONPATH={REPO}", "-e", "PYTHONDONTWRITEBYTECODE=1"]


AGENT_MOUNTS = ["-v", "/proc:/host/proc:ro", "-v", "/sys/fs/cgroup:/host/sys/fs/cgroup:ro"]


@dataclass
class Containers:
    docker: DockerDaemon
    image: str
    names: list[str]

    def start(self, *args: str) -> str:
        name = f"sc-origin-{secrets.token_hex(4)}"
        self.names.append(name)
        self.docker.cli("run", "-d", "--name", name, *_python_mounts(), *args)
        return name

    def inspect(self, name: str, template: str) -> str:
        return self.docker.cli("inspect", "-f", template, name).stdout.strip()

    def wait(self, name: str) -> tuple[int, str, str]:
        code = int(self.docker.cli("wait", name, timeout=90).stdout.strip())
        logs = self.docker.cli("logs", name)
        return code, logs.stdout, logs.stderr

    def wait_for_line(self, name: str, line: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in self.docker.cli("logs", name).stdout.splitlines():
                return
            time.sleep(0.1)
        raise AssertionError(f"{name} never printed {line!r}: {self.docker.cli('logs', name)}")


@pytest.fixture
def containers(dockerd_daemon: DockerDaemon, busybox_image: str) -> Iterator[Containers]:
    box = Containers(dockerd_daemon, busybox_image, [])
    try:
        yield box
    finally:
        if box.names:
            dockerd_daemon.cli("rm", "-f", *box.names, check=False)


@pytest.mark.docker
@pytest.mark.root
@pytest.mark.parametrize("host_pid", [True, False], ids=["pid-host", "own-pid-namespace"])
def test_agent_path_from_a_sender_container(containers: Containers, host_pid: bool) -> None:
    """The Agent's whole path: datagram from a container, PID from SO_PASSCRED, ID from cgroup."""
    name, nonce = f"selfcheck-{secrets.token_hex(6)}", secrets.token_hex(8)
    pid_mode = ["--pid", "host"] if host_pid else []
    receiver = containers.start(
        *pid_mode, "--network", "host", *AGENT_MOUNTS, containers.image,
        sys.executable, "-c", RECEIVER, name, nonce,
    )  # fmt: skip
    containers.wait_for_line(receiver, "ready")
    sender = containers.start(
        "--network", "host", containers.image, sys.executable, "-c", SENDER, name, nonce
    )
    code, out, err = containers.wait(receiver)
    assert code == 0, err
    answer = json.loads(out.splitlines()[-1])
    if host_pid:
        assert answer["pid"] == int(containers.inspect(sender, "{{.State.Pid}}"))
        assert answer["container_id"] == containers.inspect(sender, "{{.Id}}")
    else:
        assert answer["pid"] == 0  # the Agent's "matched PID for the process is 0"
        assert answer["container_id"] is None


@pytest.mark.docker
@pytest.mark.root
def test_selfcheck_in_a_pid_host_container_reports_its_own_id(containers: Containers) -> None:
    name = containers.start(
        "--pid", "host", *AGENT_MOUNTS, "-e", "DD_DOGSTATSD_ORIGIN_DETECTION=true",
        "-e", f"DD_DOGSTATSD_SOCKET={UDS}",
        "-e", "DOCKER_DD_AGENT=true", containers.image,
        sys.executable, "-m", "selfcheck", *ONLY,
    )  # fmt: skip
    code, out, err = containers.wait(name)
    result = Run(code, out, err).check("origin_detection")
    assert (result["status"], result["reason"]) == ("ok", "ok"), out + err
    assert code == 0
    details = result["details"]
    assert details["container_id"] == containers.inspect(name, "{{.Id}}")
    assert details["host_proc"] == "/host/proc"
    assert len(details["nspid"]) == 1


@pytest.mark.docker
@pytest.mark.root
def test_selfcheck_in_a_container_without_pid_host_is_not_host_pid(containers: Containers) -> None:
    name = containers.start(
        *AGENT_MOUNTS, "-e", "DD_DOGSTATSD_ORIGIN_DETECTION=true",
        "-e", f"DD_DOGSTATSD_SOCKET={UDS}", "-e", "DOCKER_DD_AGENT=true",
        containers.image, sys.executable, "-m", "selfcheck", *ONLY,
    )  # fmt: skip
    code, out, err = containers.wait(name)
    result = Run(code, out, err).check("origin_detection")
    assert (result["status"], result["reason"]) == ("failed", "not_host_pid"), out + err
    assert code == 2
    assert len(result["details"]["nspid"]) == 2


# --- the Agent's receipt, from a stand-in that counts like the Agent ---------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _receipt_run(sock: Path, env: dict[str, str], prefix: Sequence[str] = ()) -> dict[str, Any]:
    run = selfcheck(ONLY, {"HOST_PROC": "/proc", **env, "DD_DOGSTATSD_SOCKET": str(sock)}, prefix)
    return _check(run)


@pytest.mark.root
def test_receipt_found_on_the_agents_default_port_5000(socket_dir: Path) -> None:
    """No DD_EXPVAR_PORT: the Agent's own default (and the Operator's) is tried first. The
    stand-in and selfcheck share a loopback of their own, so port 5000 is free on any machine."""
    with private_loopback() as netns, agent_standin(socket_dir, 5000, prefix=netns) as sock:
        result = _receipt_run(sock, REQUIRED, netns)
    receipt = result["details"]["mechanisms"]["receipt"]
    assert (receipt["status"], receipt["port"]) == ("ok", 5000), result
    assert receipt["packets_delta"] >= 1
    assert receipt["origin_errors_delta"] == 0
    assert result["figures"]["mechanism_receipt_ok"] == 1.0
    assert "the Agent counted selfcheck's datagram" in str(result["message"])


def test_receipt_on_a_configured_port_under_several_mib(socket_dir: Path) -> None:
    """The size is the subject, not the deadline: a long check timeout leaves the receipt its
    whole ceiling (``EXPVAR_BUDGET``) rather than a share of the default 2 s, which a loaded
    machine spent on two 6 MiB reads before the stand-in had counted the datagram."""
    port = _free_port()
    with agent_standin(socket_dir, port, "--pad-mib", "6") as sock:
        env = {"DD_EXPVAR_PORT": str(port), "SELFCHECK_CHECK_TIMEOUT": "10", **REQUIRED}
        result = _receipt_run(sock, env)
    receipt = result["details"]["mechanisms"]["receipt"]
    assert (receipt["status"], receipt.get("port")) == ("ok", port), json.dumps(receipt)
    assert receipt["body_bytes"] > 6 * 2**20


def test_a_receiver_that_drops_the_datagram_is_not_received(socket_dir: Path) -> None:
    port = _free_port()
    with agent_standin(socket_dir, port, "--drop") as sock:
        result = _receipt_run(sock, {"DD_EXPVAR_PORT": str(port), **REQUIRED})
    assert (result["status"], result["reason"]) == ("failed", "not_received"), result
    receipt = result["details"]["mechanisms"]["receipt"]
    assert (receipt["packets_delta"], receipt["retried"]) == (0, True)
    assert "dsdsocket" in str(result["remediation"])


@pytest.mark.root
def test_a_receiver_that_gets_pid_zero_moves_origin_errors(socket_dir: Path) -> None:
    """The receiver in a child PID namespace: the kernel itself writes PID 0 for selfcheck."""
    port = _free_port()
    with agent_standin(socket_dir, port, pid_namespace=True) as sock:
        result = _receipt_run(sock, {"DD_EXPVAR_PORT": str(port), **REQUIRED})
    assert (result["status"], result["reason"]) == ("failed", "pid_zero"), result
    receipt = result["details"]["mechanisms"]["receipt"]
    assert receipt["origin_errors_delta"] >= 1
    assert receipt["quiet_window_errors"] == 0
    # selfcheck's own namespace is the host one: only the Agent's receipt shows the failure
    assert result["details"]["mechanisms"]["uds"]["status"] == "ok"


def test_receipt_not_read_without_an_expvar(socket_dir: Path) -> None:
    port = _free_port()
    with agent_standin(socket_dir, _free_port()) as sock:
        result = _receipt_run(sock, {"DD_EXPVAR_PORT": str(port), **REQUIRED})
    receipt = result["details"]["mechanisms"]["receipt"]
    assert receipt["status"] == "not_read"
    assert "ECONNREFUSED" in str(receipt["says"])
    assert "mechanism_receipt_ok" not in result["figures"]


# --- the client inode path without its mounts ----------------------------------------------------

CLIENT = {"DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT": "true"}


def test_inode_path_fails_and_names_the_cgroups_mount(tmp_path: Path) -> None:
    run = selfcheck(
        ONLY, {"HOST_PROC": "/proc", "DD_CONTAINER_CGROUP_ROOT": str(tmp_path), **CLIENT}
    )
    result = _check(run)
    inode = result["details"]["mechanisms"]["client_inode"]
    assert (inode["status"], inode["reason"]) == ("failed", "inode_unresolved"), result
    assert "cgroups volume" in str(inode["says"])
    assert result["figures"]["mechanism_client_inode_ok"] == 0.0
    assert result["status"] == "failed"


@pytest.mark.skipif(Path("/host/proc").exists(), reason="this machine has a /host/proc")
def test_inode_path_fails_without_host_proc_in_a_pod() -> None:
    run = selfcheck(ONLY, {"KUBERNETES_SERVICE_HOST": "10.96.0.1", **CLIENT})
    result = _check(run)
    assert (result["status"], result["reason"]) == ("failed", "procfs_missing")
    assert "procdir mount is missing" in str(result["message"])
    inode = result["details"]["mechanisms"]["client_inode"]
    assert (inode["status"], inode["enabled"]) == ("failed", True)


@pytest.mark.docker
@pytest.mark.root
def test_selfcheck_in_a_private_cgroup_namespace_finds_itself_by_inode(
    containers: Containers,
) -> None:
    """Docker's --cgroupns private, the shape of every cgroup v2 containerd pod.

    Its own cgroup reads '/', which is a note, not a failure: the inode of its own
    /sys/fs/cgroup/memory (what its client would send) resolves to its own ID through the
    Agent's inode map of the host tree.
    """
    name = containers.start(
        "--pid", "host", "--cgroupns", "private", *AGENT_MOUNTS,
        "-e", "DD_DOGSTATSD_ORIGIN_DETECTION=true", "-e", f"DD_DOGSTATSD_SOCKET={UDS}",
        "-e", "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT=true",
        "-e", "DOCKER_DD_AGENT=true", containers.image,
        sys.executable, "-m", "selfcheck", *ONLY,
    )  # fmt: skip
    code, out, err = containers.wait(name)
    result = Run(code, out, err).check("origin_detection")
    cid = containers.inspect(name, "{{.Id}}")
    assert (result["status"], result["reason"]) == ("ok", "ok"), out + err
    assert code == 0
    details = result["details"]
    assert details["own_cgroup"] == "/"
    assert details["initial_cgroup_namespace"] is False
    assert details["mechanisms"]["client_inode"]["own_container"] == cid
    assert f"found by inode ({cid[:12]})" in str(result["message"])


@pytest.mark.docker
@pytest.mark.root
def test_a_container_without_the_cgroups_mount_names_it(containers: Containers) -> None:
    """No silent fallback to the container's own /sys/fs/cgroup for the inode map."""
    name = containers.start(
        "--pid", "host", "-v", "/proc:/host/proc:ro",
        "-e", "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT=true", "-e", "DOCKER_DD_AGENT=true",
        containers.image, sys.executable, "-m", "selfcheck", *ONLY,
    )  # fmt: skip
    code, out, err = containers.wait(name)
    result = Run(code, out, err).check("origin_detection")
    inode = result["details"]["mechanisms"]["client_inode"]
    assert (inode["status"], inode["reason"]) == ("failed", "inode_unresolved"), out + err
    assert "/host/sys/fs/cgroup is not mounted (the chart's cgroups volume)" in inode["says"]
    assert (result["status"], result["reason"]) == ("failed", "inode_unresolved")
    assert code == 1  # optional: only the client mechanisms are enabled
