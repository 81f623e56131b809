"""runtime_socket against a real dockerd and a real containerd (Debian packages).

The daemons are started by the session fixtures in ``tests/support/daemons.py`` on
temporary sockets; the versions the check reports must be the ones they really have.
Faults are real too: stale and regular files, a wedged listener, a Docker socket given as
a CRI socket, dockerd's own containerd (its CRI plugin disabled), and UID 100 through
``setpriv`` on the daemons' 0660 sockets, denied and then allowed with the socket's group.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.checks import runtime_socket
from selfcheck.config import Config
from selfcheck.context import CheckContext
from selfcheck.host import runtimes
from selfcheck.host.eyes import own_eyes
from selfcheck.host.root import Root
from selfcheck.host.view import HostView
from selfcheck.model import Outcome, Reason, Status
from tests.support.configs import make_config
from tests.support.daemons import ContainerdDaemon, DockerDaemon
from tests.support.hosttree import proc_tree
from tests.support.run import AGENT_GID, AGENT_UID, AS_AGENT_USER, in_shell, selfcheck
from tests.support.standins import WedgedListener, stale_socket


@pytest.fixture
def no_defaults(monkeypatch: pytest.MonkeyPatch, socket_dir: Path) -> Path:
    """Default paths that do not exist, so the machine's own sockets never leak in; nor do
    the runtimes other test sessions run here (their ``--address`` flags)."""
    monkeypatch.setattr(runtimes, "MAX_PROCESSES", 0)
    monkeypatch.setattr(runtime_socket, "DOCKER_DEFAULTS", (str(socket_dir / "d.sock"),))
    monkeypatch.setattr(runtime_socket, "CRI_DEFAULTS", (str(socket_dir / "c.sock"),))
    return socket_dir


@pytest.mark.docker
def test_dockerd_answers_ping_and_its_real_version(dockerd_daemon: DockerDaemon) -> None:
    outcome = runtime_socket.run(CheckContext.of(make_config(DOCKER_HOST=dockerd_daemon.host)))
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK), outcome.message
    assert dict(outcome.node_info) == {
        "runtime": "docker",
        "runtime_version": dockerd_daemon.version(),
    }
    assert outcome.details["source"] == "DOCKER_HOST"
    assert outcome.details["api_version"]
    assert outcome.details["candidates"][0]["result"] == "ok"


@pytest.mark.containerd
def test_containerd_answers_the_cri_version_call(containerd_daemon: ContainerdDaemon) -> None:
    outcome = runtime_socket.run(
        CheckContext.of(make_config(DD_CRI_SOCKET_PATH=str(containerd_daemon.socket)))
    )
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK), outcome.message
    assert outcome.node_info["runtime"] == "containerd"
    assert outcome.node_info["runtime_version"] == containerd_daemon.version()
    assert outcome.details["runtime_api_version"] == "v1"


@pytest.mark.docker
@pytest.mark.containerd
def test_cli_publishes_the_runtime_in_node_info(
    dockerd_daemon: DockerDaemon, containerd_daemon: ContainerdDaemon
) -> None:
    env = {"DOCKER_HOST": dockerd_daemon.host, "DD_CRI_SOCKET_PATH": str(containerd_daemon.socket)}
    run = selfcheck(["check", "--only", "runtime_socket", "--json"], env)
    assert run.code == 0, run.stdout
    assert run.json["node"]["runtime"] == "docker"
    assert run.json["node"]["runtime_version"] == dockerd_daemon.version()
    tried = run.check("runtime_socket")["details"]["candidates"]
    assert [(c["source"], c["result"]) for c in tried] == [
        ("DOCKER_HOST", "ok"),
        ("DD_CRI_SOCKET_PATH", "ok"),
    ]
    assert tried[1]["detail"] == f"containerd {containerd_daemon.version()}"


@pytest.mark.containerd
def test_default_discovery_ignores_broken_defaults_when_another_answers(
    monkeypatch: pytest.MonkeyPatch, socket_dir: Path, containerd_daemon: ContainerdDaemon
) -> None:
    stale = stale_socket(socket_dir / "docker.sock", socket.SOCK_STREAM)
    monkeypatch.setattr(runtime_socket, "DOCKER_DEFAULTS", (str(socket_dir / "none"), str(stale)))
    monkeypatch.setattr(runtime_socket, "CRI_DEFAULTS", (str(containerd_daemon.socket),))
    outcome = runtime_socket.run(CheckContext.of(make_config()))
    # The Agent's IsAvailable: a default that does not answer is absent, not a fault.
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK), outcome.message
    assert outcome.node_info["runtime"] == "containerd"
    assert outcome.details["ignored_defaults"] == [str(stale)]
    results = [(c["path"], c["result"]) for c in outcome.details["candidates"]]
    assert results == [
        (str(socket_dir / "none"), "enoent"),
        (str(stale), "econnrefused"),
        (str(containerd_daemon.socket), "ok"),
    ]


@pytest.mark.docker
def test_a_broken_explicit_socket_fails_even_when_another_answers(
    no_defaults: Path, dockerd_daemon: DockerDaemon
) -> None:
    stale = stale_socket(no_defaults / "containerd.sock", socket.SOCK_STREAM)
    outcome = runtime_socket.run(
        CheckContext.of(make_config(DOCKER_HOST=dockerd_daemon.host, DD_CRI_SOCKET_PATH=str(stale)))
    )
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ECONNREFUSED)
    assert "containerd socket from DD_CRI_SOCKET_PATH" in outcome.message
    assert outcome.node_info["runtime"] == "docker"  # what does answer is still published


def test_no_socket_anywhere_names_every_path(no_defaults: Path) -> None:
    outcome = runtime_socket.run(CheckContext.of(make_config()))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ENOENT)
    assert str(no_defaults / "d.sock") in outcome.message
    assert str(no_defaults / "c.sock") in outcome.message
    assert "runtimesocketdir" in outcome.remediation


def test_a_tcp_docker_host_is_not_checked(no_defaults: Path) -> None:
    outcome = runtime_socket.run(CheckContext.of(make_config(DOCKER_HOST="tcp://127.0.0.1:2375")))
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, Reason.NOT_APPLICABLE)
    assert outcome.details["not_checked"] == ["DOCKER_HOST=tcp://127.0.0.1:2375"]


FIXES = {
    Reason.ENOENT: "Mount the host's runtime socket directory read-only at /host/var/run",
    Reason.NOT_SOCKET: "The runtime path is not a socket",
    Reason.ECONNREFUSED: "The socket file exists but the runtime is not listening",
    Reason.TIMEOUT: "The runtime accepted the connection but did not answer in time",
    Reason.PROTOCOL_ERROR: "Something answers on the socket but not in the runtime's API",
}
"""How each reason's fix begins."""


def _fault(config: Config, reason: Reason, *words: str) -> str:
    outcome = runtime_socket.run(CheckContext.of(config))
    assert (outcome.status, outcome.reason) == (Status.FAILED, reason), outcome.message
    assert outcome.remediation.startswith(FIXES[reason]), outcome.remediation
    for word in words:
        assert word in outcome.message
    return outcome.message


def test_missing_regular_and_stale_explicit_sockets(no_defaults: Path) -> None:
    missing = no_defaults / "docker.sock"
    _fault(make_config(DOCKER_HOST=f"unix://{missing}"), Reason.ENOENT, f"{missing}:", "(ENOENT)")
    regular = no_defaults / "containerd.sock"
    regular.write_text("")
    _fault(make_config(DD_CRI_SOCKET_PATH=str(regular)), Reason.NOT_SOCKET, "regular file")
    stale = stale_socket(no_defaults / "crio.sock", socket.SOCK_STREAM)
    _fault(make_config(DD_CRI_SOCKET_PATH=str(stale)), Reason.ECONNREFUSED, "stale")


@pytest.mark.parametrize("setting", ["DOCKER_HOST", "DD_CRI_SOCKET_PATH"])
def test_a_runtime_that_accepts_and_never_answers_times_out(
    no_defaults: Path, setting: str
) -> None:
    with WedgedListener(no_defaults / "containerd.sock") as wedged:
        value = f"unix://{wedged.path}" if setting == "DOCKER_HOST" else str(wedged.path)
        config = make_config({setting: value, "SELFCHECK_CHECK_TIMEOUT": "0.8"})
        _fault(config, Reason.TIMEOUT, "no answer within 0.6 s", "(ETIMEDOUT)")


@pytest.mark.docker
def test_the_docker_socket_given_as_a_cri_socket(
    no_defaults: Path, dockerd_daemon: DockerDaemon
) -> None:
    _fault(
        make_config(DD_CRI_SOCKET_PATH=str(dockerd_daemon.socket)),
        Reason.PROTOCOL_ERROR,
        "not a CRI",
    )


@pytest.mark.docker
def test_containerd_with_its_cri_plugin_disabled(
    no_defaults: Path, dockerd_daemon: DockerDaemon
) -> None:
    """dockerd's own containerd disables CRI: it connects, then answers UNIMPLEMENTED."""
    managed = dockerd_daemon.directory / "exec" / "containerd" / "containerd.sock"
    message = _fault(
        make_config(DD_CRI_SOCKET_PATH=str(managed)), Reason.PROTOCOL_ERROR, "UNIMPLEMENTED"
    )
    assert "RuntimeService/Version" in message


@pytest.mark.root
@pytest.mark.docker
@pytest.mark.containerd
@pytest.mark.parametrize("runtime", ["docker", "containerd"])
def test_agent_user_needs_the_sockets_group(
    runtime: str, dockerd_daemon: DockerDaemon, containerd_daemon: ContainerdDaemon
) -> None:
    """UID 100 on the daemon's real 0660 socket: eacces naming its gid, then ok with that group."""
    if runtime == "docker":
        path, env = dockerd_daemon.socket, {"DOCKER_HOST": dockerd_daemon.host}
        version = dockerd_daemon.version()
    else:
        path, env = containerd_daemon.socket, {"DD_CRI_SOCKET_PATH": str(containerd_daemon.socket)}
        version = containerd_daemon.version()
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o660
    denied = selfcheck(["check", "--only", "runtime_socket", "--json"], env, AS_AGENT_USER)
    result = denied.check("runtime_socket")
    assert (result["status"], result["reason"]) == ("failed", "eacces"), result
    assert denied.code == 2
    assert f"uid {AGENT_UID}, gid {AGENT_GID}" in result["message"]
    assert f"0660 uid 0 gid {st.st_gid}" in result["message"]
    assert f"gid {st.st_gid}: add {st.st_gid} to the pod's" in result["remediation"]
    assert "spec.securityContext.supplementalGroups" in result["remediation"]
    if runtime == "containerd":  # what the Agent does: one INFO line, then no CRI checks
        assert (
            f"the Agent only logs 'Agent found cri socket at: {path} but socket not reachable "
            "(permissions?)' at INFO level and runs without its CRI and containerd checks"
        ) in result["message"]
    else:
        assert "the Agent does not probe DOCKER_HOST" in result["message"]

    with_group = (
        "setpriv",
        f"--reuid={AGENT_UID}",
        f"--regid={AGENT_GID}",
        f"--groups={st.st_gid}",
    )
    allowed = selfcheck(["check", "--only", "runtime_socket", "--json"], env, with_group)
    assert allowed.code == 0, allowed.stdout
    assert allowed.json["node"]["runtime_version"] == version


@pytest.mark.root
@pytest.mark.containerd
def test_an_absolute_symlink_broken_under_host_is_named(
    containerd_daemon: ContainerdDaemon,
) -> None:
    """Bottlerocket's /run/dockershim.sock points at /run/containerd/containerd.sock: under
    /host the absolute target resolves in the container's root and the socket looks absent."""
    created = not Path("/host").exists()
    try:
        run = in_shell(
            "mkdir -p /host && unshare -m --propagation private sh -euc '"
            "mount -t tmpfs none /host && mkdir -p /host/run/containerd && "
            "touch /host/run/containerd/containerd.sock && "
            f"mount --bind {containerd_daemon.socket} /host/run/containerd/containerd.sock && "
            "ln -s /run/containerd/containerd.sock /host/run/dockershim.sock && "
            "exec $SELFCHECK check --only runtime_socket --json'",
            {"DD_CRI_SOCKET_PATH": "/host/run/dockershim.sock"},
        )
    finally:
        if created:
            Path("/host").rmdir()
    result = run.check("runtime_socket")
    assert (result["status"], result["reason"]) == ("failed", "enoent"), result
    assert "symlink to the absolute path /run/containerd/containerd.sock" in result["message"]
    assert "/host/run/containerd/containerd.sock exists" in result["message"]
    assert "DD_CRI_SOCKET_PATH=/host/run/containerd/containerd.sock" in result["remediation"]
    created = not Path("/host").exists()
    try:
        fixed = in_shell(
            "mkdir -p /host && unshare -m --propagation private sh -euc '"
            "mount -t tmpfs none /host && mkdir -p /host/run/containerd && "
            "touch /host/run/containerd/containerd.sock && "
            f"mount --bind {containerd_daemon.socket} /host/run/containerd/containerd.sock && "
            "exec $SELFCHECK check --only runtime_socket --json'",
            {"DD_CRI_SOCKET_PATH": "/host/run/containerd/containerd.sock"},
        )
    finally:
        if created:
            Path("/host").rmdir()  # also when the check fails (sh -e stops before a rmdir)
    assert fixed.check("runtime_socket")["status"] == "ok", fixed.stdout


# -- the node's runtime where the Agent does not look: fixture node roots --------------------
#
# The Agent's container is a directory tree (``Root``): its ``/host/var/run`` (the chart's
# runtimesocketdir) or ``/host/run`` holds what the node's ``/run`` holds. Sockets are real:
# plain listening unix sockets where only existence and connect matter (the search), and the
# real containerd, hard-linked into the tree (a socket is reached by its inode), where the
# Agent's walk speaks CRI to it.


class NodeRoot:
    """An Agent container's root with node directories and real sockets bound in it."""

    def __init__(self, base: Path, *dirs: str) -> None:
        self.base = base
        self.listeners: list[socket.socket] = []
        for d in dirs:
            (base / d.lstrip("/")).mkdir(parents=True, exist_ok=True)

    def listen(self, path: str) -> Path:
        where = self.base / path.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(where))  # socket_dir is short: the path fits sun_path
        sock.listen(8)
        self.listeners.append(sock)
        return where

    def stale(self, path: str) -> Path:
        where = self.base / path.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        return stale_socket(where, socket.SOCK_STREAM)

    def link(self, path: str, real: Path) -> Path:
        where = self.base / path.lstrip("/")
        where.parent.mkdir(parents=True, exist_ok=True)
        os.link(real, where)
        return where

    def run(self, **settings: str) -> Outcome:
        config = make_config(settings)
        eyes = own_eyes("fixture").__class__(
            "agent", Root(self.base), Path("/proc"), "self", "fixture", own_eyes("").credentials
        )
        return runtime_socket.run(
            CheckContext.of(config, HostView(config.host_proc, config.cgroup_root, eyes))
        )

    def close(self) -> None:
        for sock in self.listeners:
            sock.close()


@pytest.fixture
def node(socket_dir: Path) -> Iterator[NodeRoot]:
    root = NodeRoot(socket_dir / "agent", "/host/var/run")
    try:
        yield root
    finally:
        root.close()


HELM_OPERATOR = "Helm datadog.criSocketPath={0} (the chart then mounts {1} at /host{1}"


def _names(outcome: Outcome, node_path: str, agent_path: str) -> None:
    """The message names the node's socket and where the Agent sees it; the fix names the
    setting for each install form with the exact value."""
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ENOENT), outcome.message
    assert f"the node's {node_path} (" in outcome.message
    assert f"answers at {agent_path} in the Agent's container" in outcome.message
    fix = outcome.remediation
    assert HELM_OPERATOR.format(node_path, os.path.dirname(node_path)) in fix, fix
    assert f"Operator spec.global.criSocketPath={node_path} " in fix
    assert f"a plain manifest: DD_CRI_SOCKET_PATH={agent_path}," in fix
    found = [s for s in outcome.details["node_sockets"] if s["result"] == "ok"]
    assert found[0]["node_path"] == node_path


@pytest.mark.containerd
def test_k3s_and_rke2_containerd_under_the_mounted_run_dir(
    node: NodeRoot, containerd_daemon: ContainerdDaemon
) -> None:
    node.link("/host/var/run/k3s/containerd/containerd.sock", containerd_daemon.socket)
    outcome = node.run()
    _names(
        outcome,
        "/run/k3s/containerd/containerd.sock",
        "/host/var/run/k3s/containerd/containerd.sock",
    )
    assert "(k3s, RKE2)" in outcome.message
    assert "Note:" not in outcome.remediation  # the path names containerd: no check is missed
    fixed = node.run(DD_CRI_SOCKET_PATH="/host/var/run/k3s/containerd/containerd.sock")
    assert (fixed.status, fixed.node_info["runtime"]) == (Status.OK, "containerd"), fixed.message
    assert fixed.node_info["runtime_version"] == containerd_daemon.version()
    assert "missed" not in fixed.details


@pytest.mark.containerd
def test_the_charts_k3s_setting_reaches_containerd(
    node: NodeRoot, containerd_daemon: ContainerdDaemon
) -> None:
    """Helm datadog.criSocketPath=/run/k3s/containerd/containerd.sock: the chart mounts that
    directory at /host/run/k3s/containerd and sets DD_CRI_SOCKET_PATH below it."""
    node.link("/host/run/k3s/containerd/containerd.sock", containerd_daemon.socket)
    outcome = node.run(DD_CRI_SOCKET_PATH="/host/run/k3s/containerd/containerd.sock")
    assert (outcome.status, outcome.node_info["runtime"]) == (Status.OK, "containerd")


def test_containerd_under_run_mounted_at_host_run(node: NodeRoot) -> None:
    """A pod that mounts the node's /run at /host/run: the Agent looks under /host/var/run."""
    node.listen("/host/run/containerd/containerd.sock")
    _names(node.run(), "/run/containerd/containerd.sock", "/host/run/containerd/containerd.sock")


def test_crio_when_the_setting_names_another_runtime(node: NodeRoot) -> None:
    node.listen("/host/var/run/crio/crio.sock")
    outcome = node.run(DD_CRI_SOCKET_PATH="/host/var/run/containerd/containerd.sock")
    _names(outcome, "/run/crio/crio.sock", "/host/var/run/crio/crio.sock")
    assert "the Agent logs nothing and runs without its CRI and containerd checks" in (
        outcome.message
    )


def test_cri_dockerd_is_named_with_the_checks_its_path_misses(node: NodeRoot) -> None:
    node.listen("/host/var/run/cri-dockerd.sock")
    outcome = node.run()
    _names(outcome, "/run/cri-dockerd.sock", "/host/var/run/cri-dockerd.sock")
    assert "Note: the Agent picks its checks by the socket path's name" in outcome.remediation
    assert "runs the CRI check only" in outcome.remediation


def test_bottlerocket_dockershim_symlink_points_at_containerd(node: NodeRoot) -> None:
    """Datadog's Bottlerocket advice, criSocketPath=/run/dockershim.sock: the chart mounts /run
    at /host/run, and the absolute symlink resolves in the Agent's own root
    (bottlerocket-os/bottlerocket#4074). The containerd socket beside it is the fix."""
    node.listen("/host/run/containerd/containerd.sock")
    (node.base / "host/run/dockershim.sock").symlink_to("/run/containerd/containerd.sock")
    outcome = node.run(DD_CRI_SOCKET_PATH="/host/run/dockershim.sock")
    assert "symlink to the absolute path /run/containerd/containerd.sock" in outcome.message
    _names(outcome, "/run/containerd/containerd.sock", "/host/run/containerd/containerd.sock")


def test_microk8s_socket_outside_every_mount_names_the_volume(node: NodeRoot) -> None:
    """microk8s (a snap, not runnable here) passes its socket to containerd as a flag
    (canonical/microk8s microk8s-resources/default-args/containerd): the node's process list,
    written as the two procfs files the search reads, is all that names it."""
    address = "/var/snap/microk8s/common/run/containerd.sock"
    argv = ["/snap/microk8s/current/bin/containerd", "--config", "x.toml", "--address", address]
    proc_tree(node.base / "proc", {4242: {"comm": "containerd\n", "cmdline": "\0".join(argv)}})
    outcome = node.run()
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ENOENT)
    assert f"at {address} (microk8s: containerd pid 4242, its --address flag)" in outcome.message
    assert "outside every node directory the Agent mounts" in outcome.message
    fix = outcome.remediation
    assert fix.startswith(f"Mount the directory of {address} and point the Agent at it")
    assert HELM_OPERATOR.format(address, os.path.dirname(address)) in fix
    assert f"Operator spec.global.criSocketPath={address} " in fix
    assert (
        "a plain manifest: a hostPath volume /var/snap/microk8s/common/run mounted read-only at "
        f"/host/var/snap/microk8s/common/run, and DD_CRI_SOCKET_PATH=/host{address}"
    ) in fix
    assert outcome.details["node_sockets"][0]["result"] == "unmounted"


def test_a_stale_socket_is_taken_by_the_agent_and_says_so(node: NodeRoot) -> None:
    """The Agent refuses a socket only on a denied connect (socket.go): a stale file is
    'available', taken, and its checks fail with no log line."""
    node.stale("/host/var/run/containerd/containerd.sock")
    outcome = node.run(DD_CRI_SOCKET_PATH="/host/var/run/containerd/containerd.sock")
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ECONNREFUSED)
    assert (
        "the Agent still counts /host/var/run/containerd/containerd.sock as available (it "
        "refuses a socket only when the connect is denied"
    ) in outcome.message
    assert "its containerd checks fail against it with no log at startup" in outcome.message


def test_a_stale_default_shadows_an_answering_one(
    node: NodeRoot, containerd_daemon: ContainerdDaemon
) -> None:
    """containerd's default is stale, CRI-O's answers: the Agent takes the first and never
    tries the second; the fix points it at the one that answers."""
    node.stale("/host/var/run/containerd/containerd.sock")
    node.link("/host/var/run/crio/crio.sock", containerd_daemon.socket)
    outcome = node.run()
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ECONNREFUSED)
    assert "tries no later default (so it never uses /host/var/run/crio/crio.sock" in (
        outcome.message
    )
    assert "DD_CRI_SOCKET_PATH=/host/var/run/crio/crio.sock" in outcome.remediation


@pytest.mark.containerd
def test_a_cri_path_naming_no_runtime_misses_the_containerd_check(
    node: NodeRoot, containerd_daemon: ContainerdDaemon
) -> None:
    node.link("/host/run/dockershim.sock", containerd_daemon.socket)
    outcome = node.run(DD_CRI_SOCKET_PATH="/host/run/dockershim.sock")
    assert (outcome.status, outcome.node_info["runtime"]) == (Status.OK, "containerd")
    assert "runs the CRI check only and misses the containerd check" in outcome.message
    assert "set DD_AUTOCONFIG_INCLUDE_FEATURES=containerd" in outcome.details["missed"]
