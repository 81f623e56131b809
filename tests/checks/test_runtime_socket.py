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
from pathlib import Path

import pytest

from selfcheck.checks import runtime_socket
from selfcheck.config import Config
from selfcheck.context import CheckContext
from selfcheck.model import Reason, Status
from tests.support.configs import make_config
from tests.support.daemons import ContainerdDaemon, DockerDaemon
from tests.support.run import AGENT_GID, AGENT_UID, AS_AGENT_USER, in_shell, selfcheck
from tests.support.standins import WedgedListener, stale_socket


@pytest.fixture
def no_defaults(monkeypatch: pytest.MonkeyPatch, socket_dir: Path) -> Path:
    """Default paths that do not exist, so the machine's own sockets never leak in."""
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
    fixed = in_shell(
        "mkdir -p /host && unshare -m --propagation private sh -euc '"
        "mount -t tmpfs none /host && mkdir -p /host/run/containerd && "
        "touch /host/run/containerd/containerd.sock && "
        f"mount --bind {containerd_daemon.socket} /host/run/containerd/containerd.sock && "
        "exec $SELFCHECK check --only runtime_socket --json'; rmdir /host",
        {"DD_CRI_SOCKET_PATH": "/host/run/containerd/containerd.sock"},
    )
    assert fixed.check("runtime_socket")["status"] == "ok", fixed.stdout
