"""apm_socket against a stand-in of the trace-agent's unix socket receiver.

The trace-agent cannot run here, so its ``/info`` endpoint on the APM socket is a stand-in
(``tests/support/standins.py``) answering what pkg/trace/api/info.go answers; the
sockets, faults and the other user are real. The wedged-socket test runs the real CLI with
the other socket checks beside it, against real dockerd, to show one hung peer fails only
its own check, by that check's own timeout.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from selfcheck.checks import apm_socket
from selfcheck.config import Config
from selfcheck.context import CheckContext
from selfcheck.model import Reason, Status
from tests.support.configs import make_config, settled
from tests.support.daemons import DockerDaemon
from tests.support.run import AGENT_GID, AGENT_UID, AS_AGENT_USER, selfcheck
from tests.support.standins import (
    AgentHTTPStandIn,
    DogStatsDReceiver,
    TraceAgentStandIn,
    WedgedListener,
    stale_socket,
)


def test_publishes_the_trace_agent_version(socket_dir: Path) -> None:
    with TraceAgentStandIn(socket_dir / "apm.socket", version="7.81.1") as apm:
        outcome = apm_socket.run(CheckContext.of(make_config(DD_APM_RECEIVER_SOCKET=apm.path)))
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK)
    assert outcome.details["trace_agent_version"] == "7.81.1"
    assert outcome.details["endpoints"] == 5
    assert outcome.details["mode"] == "0722"
    assert "trace-agent 7.81.1" in outcome.message


def test_required_only_when_the_agent_is_configured_for_it(socket_dir: Path) -> None:
    assert apm_socket.SPEC.required_by_default(
        make_config(DD_APM_RECEIVER_SOCKET=socket_dir / "apm.socket")
    )
    unset = make_config()
    assert not apm_socket.SPEC.required_by_default(unset)


def test_not_configured_and_absent_is_skipped(socket_dir: Path) -> None:
    config = make_config().with_overrides(apm_socket=socket_dir / "apm.socket")
    outcome = settled(apm_socket.SPEC, CheckContext.of(config))
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, Reason.NOT_ENABLED)
    assert outcome.message.startswith("DD_APM_RECEIVER_SOCKET is not set: ")
    assert "the verdict would be failed (enoent)" in outcome.message


def test_required_by_the_user_and_absent_fails(socket_dir: Path) -> None:
    config = make_config(SELFCHECK_REQUIRE="apm_socket").with_overrides(
        apm_socket=socket_dir / "apm.socket"
    )
    outcome = apm_socket.run(CheckContext.of(config))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ENOENT)


FIXES = {
    Reason.ENOENT: "Mount the host directory of the APM socket into this container",
    Reason.NOT_SOCKET: "The path is not the trace-agent's stream socket",
    Reason.ECONNREFUSED: "The socket file exists but nothing listens",
    Reason.TIMEOUT: "The trace-agent accepted the connection but did not answer GET /info",
    Reason.PROTOCOL_ERROR: "Something answers on the socket, but not the trace-agent's HTTP API",
}
"""How each reason's fix begins."""


def _fault(config: Config, reason: Reason, *words: str) -> None:
    outcome = apm_socket.run(CheckContext.of(config))
    assert (outcome.status, outcome.reason) == (Status.FAILED, reason), outcome.message
    assert str(config.apm_socket) in outcome.message
    assert outcome.remediation.startswith(FIXES[reason]), outcome.remediation
    for word in words:
        assert word in outcome.message


def test_missing_stale_and_wrong_type(socket_dir: Path) -> None:
    _fault(make_config(DD_APM_RECEIVER_SOCKET=socket_dir / "apm.socket"), Reason.ENOENT, "(ENOENT)")
    stale = stale_socket(socket_dir / "stale.socket", socket.SOCK_STREAM)
    _fault(
        make_config(DD_APM_RECEIVER_SOCKET=stale), Reason.ECONNREFUSED, "(ECONNREFUSED)", "stale"
    )
    regular = socket_dir / "file.socket"
    regular.write_text("")
    _fault(make_config(DD_APM_RECEIVER_SOCKET=regular), Reason.NOT_SOCKET, "regular file")
    with DogStatsDReceiver(socket_dir / "dsd.socket") as dsd:
        _fault(make_config(DD_APM_RECEIVER_SOCKET=dsd.path), Reason.NOT_SOCKET, "(EPROTOTYPE)")


def test_a_wedged_socket_times_out_within_the_checks_own_budget(socket_dir: Path) -> None:
    with WedgedListener(socket_dir / "apm.socket") as wedged:
        assert wedged.path is not None
        config = make_config(DD_APM_RECEIVER_SOCKET=wedged.path, SELFCHECK_CHECK_TIMEOUT="1")
        _fault(config, Reason.TIMEOUT, "no answer within 0.75 s", "(ETIMEDOUT)")


def test_an_http_server_that_is_not_the_trace_agent(socket_dir: Path) -> None:
    with TraceAgentStandIn(socket_dir / "apm.socket") as apm:
        apm.server.routes = {"/info": (200, {"hello": "world"})}
        _fault(
            make_config(DD_APM_RECEIVER_SOCKET=apm.path), Reason.PROTOCOL_ERROR, "without a version"
        )
        apm.server.routes = {}
        _fault(make_config(DD_APM_RECEIVER_SOCKET=apm.path), Reason.PROTOCOL_ERROR, "HTTP 404")


@pytest.mark.root
def test_agent_user_denied_on_0660_root_socket_then_allowed_with_its_group(
    socket_dir: Path,
) -> None:
    with TraceAgentStandIn(socket_dir / "apm.socket", mode=0o660) as apm:
        env = {"DD_APM_RECEIVER_SOCKET": str(apm.path)}
        denied = selfcheck(["check", "--only", "apm_socket", "--json"], env, AS_AGENT_USER)
        result = denied.check("apm_socket")
        assert (result["status"], result["reason"]) == ("failed", "eacces"), result
        assert denied.code == 2
        assert "supplementalGroups" in result["remediation"]
        with_group = ("setpriv", f"--reuid={AGENT_UID}", f"--regid={AGENT_GID}", "--groups=0")
        allowed = selfcheck(["check", "--only", "apm_socket", "--json"], env, with_group)
        assert allowed.check("apm_socket")["details"]["trace_agent_version"] == "7.81.1"
        assert allowed.code == 0


@pytest.mark.docker
def test_one_wedged_socket_fails_alone_while_the_others_finish(
    socket_dir: Path, dockerd_daemon: DockerDaemon
) -> None:
    """The real CLI, four socket checks at once: only the wedged APM socket fails."""
    with (
        WedgedListener(socket_dir / "apm.socket") as wedged,
        DogStatsDReceiver(socket_dir / "dsd.socket") as dsd,
        AgentHTTPStandIn() as agent,
    ):
        env = {
            "DD_APM_RECEIVER_SOCKET": str(wedged.path),
            "DD_DOGSTATSD_SOCKET": str(dsd.path),
            "DD_HEALTH_PORT": str(agent.port),
            "DD_EXPVAR_PORT": str(agent.port),
            "DOCKER_HOST": dockerd_daemon.host,
        }
        only = "apm_socket,dogstatsd_socket,agent_health,runtime_socket"
        run = selfcheck(["check", "--only", only, "--json"], env, timeout=30)
    statuses = {r["check"]: (r["status"], r["reason"]) for r in run.json["checks"]}
    assert statuses == {
        "apm_socket": ("failed", "timeout"),
        "dogstatsd_socket": ("ok", "ok"),
        "agent_health": ("ok", "ok"),
        "runtime_socket": ("ok", "ok"),
    }
    apm = run.check("apm_socket")
    assert "no answer within 1.5 s" in apm["message"]  # its own budget, not the runner's 2 s
    assert "abandoned" not in apm["message"]
    assert run.code == 2
    assert run.json["node"]["runtime"] == "docker"
