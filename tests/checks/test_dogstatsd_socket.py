"""dogstatsd_socket against a stand-in of the Agent's DogStatsD listener and expvar endpoint.

The Datadog Agent cannot run here, so its unixgram listener (``SO_PASSCRED``, mode 0722)
and its ``/debug/vars`` endpoint are stand-ins (``tests/support/standins.py``); the socket
files, the kernel's errnos and the other user (UID 100 through ``setpriv``) are real.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.checks import dogstatsd_socket
from selfcheck.config import Config
from selfcheck.context import CheckContext
from selfcheck.model import Reason, Status
from selfcheck.registry import required_ids
from tests.support.configs import environment, make_config
from tests.support.run import AGENT_GID, AGENT_UID, AS_AGENT_USER, selfcheck
from tests.support.standins import (
    AgentHTTPStandIn,
    DogStatsDReceiver,
    free_port,
    stale_socket,
    stream_socket,
)


@pytest.fixture
def closed_port() -> Iterator[int]:
    with free_port() as port:
        yield port


def test_sends_one_heartbeat_the_receiver_gets(socket_dir: Path, closed_port: int) -> None:
    with DogStatsDReceiver(socket_dir / "dsd.socket") as receiver:
        outcome = dogstatsd_socket.run(
            CheckContext.of(
                make_config(DD_DOGSTATSD_SOCKET=receiver.path, DD_EXPVAR_PORT=closed_port)
            )
        )
        packets = receiver.wait_for(1)
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK)
    assert [p.data for p in packets] == [b"datadog.selfcheck.heartbeat:1|c"]
    assert packets[0].pid == os.getpid()  # SO_PASSCRED: what origin detection will see
    assert outcome.details["mode"] == "0722"
    assert outcome.details["mode_matches_agent"] is True
    assert outcome.details["sent_bytes"] == len(packets[0].data)
    assert "expvar" in outcome.details and "not read" in outcome.details["expvar"]
    assert outcome.figures == {}


def test_metric_name_and_connect_only_mode(socket_dir: Path, closed_port: int) -> None:
    with DogStatsDReceiver(socket_dir / "dsd.socket") as receiver:
        named = make_config(
            DD_DOGSTATSD_SOCKET=receiver.path,
            DD_EXPVAR_PORT=closed_port,
            SELFCHECK_HEARTBEAT_METRIC="team.sidecar.alive",
        )
        assert dogstatsd_socket.run(CheckContext.of(named)).status is Status.OK
        connect = make_config(
            DD_DOGSTATSD_SOCKET=receiver.path,
            DD_EXPVAR_PORT=closed_port,
            SELFCHECK_DOGSTATSD_MODE="connect",
        )
        outcome = dogstatsd_socket.run(CheckContext.of(connect))
        packets = receiver.wait_for(2, timeout=0.5)
    assert [p.data for p in packets] == [b"team.sidecar.alive:1|c"]
    assert outcome.status is Status.OK
    assert "nothing sent" in outcome.message


@pytest.mark.parametrize("bad", ["a:b", "a|c", "a@0.5", "a\nb", "a b", ""])
def test_a_metric_name_that_would_change_the_datagram_is_bad_config(
    socket_dir: Path, bad: str
) -> None:
    run = selfcheck(
        ["check", "--only", "dogstatsd_socket"],
        {"DD_DOGSTATSD_SOCKET": str(socket_dir / "x"), "SELFCHECK_HEARTBEAT_METRIC": bad},
    )
    if bad == "":
        assert run.code != 3  # empty means the default name
    else:
        assert run.code == 3, run.stderr
        assert "SELFCHECK_HEARTBEAT_METRIC" in run.stderr
        assert "Traceback" not in run.stderr


def test_publishes_the_agents_dogstatsd_uds_counters(socket_dir: Path) -> None:
    counters = {"Packets": 1234, "OriginDetectionErrors": 7, "PacketReadingErrors": 2, "Bytes": 9}
    with (
        DogStatsDReceiver(socket_dir / "dsd.socket") as receiver,
        AgentHTTPStandIn(uds_counters=counters) as agent,
    ):
        outcome = dogstatsd_socket.run(
            CheckContext.of(
                make_config(DD_DOGSTATSD_SOCKET=receiver.path, DD_EXPVAR_PORT=agent.port)
            )
        )
    assert outcome.status is Status.OK
    assert outcome.figures == {
        "uds_packets": 1234.0,
        "uds_origin_detection_errors": 7.0,
        "uds_packet_reading_errors": 2.0,
    }
    assert outcome.details["dogstatsd_uds"]["OriginDetectionErrors"] == 7


def test_a_mode_other_than_the_agents_is_reported(socket_dir: Path, closed_port: int) -> None:
    with DogStatsDReceiver(socket_dir / "dsd.socket", mode=0o777) as receiver:
        outcome = dogstatsd_socket.run(
            CheckContext.of(
                make_config(DD_DOGSTATSD_SOCKET=receiver.path, DD_EXPVAR_PORT=closed_port)
            )
        )
    assert outcome.status is Status.OK
    assert outcome.details["mode_matches_agent"] is False
    assert "mode 0777, not the Agent's 0722" in outcome.message


def test_a_socket_other_users_cannot_write_degrades_even_for_root(
    socket_dir: Path, closed_port: int
) -> None:
    """Root's send succeeds on a 0755 socket; non-root clients in other pods would get EACCES."""
    with DogStatsDReceiver(socket_dir / "dsd.socket", mode=0o755) as receiver:
        outcome = dogstatsd_socket.run(
            CheckContext.of(
                make_config(DD_DOGSTATSD_SOCKET=receiver.path, DD_EXPVAR_PORT=closed_port)
            )
        )
        assert len(receiver.wait_for(1)) == 1
    assert (outcome.status, outcome.reason) == (Status.DEGRADED, Reason.EACCES)
    assert "mode 0755, not the Agent's 0722" in outcome.message
    assert "other users cannot write" in outcome.message
    assert "0722" in outcome.remediation


FIXES = {
    Reason.ENOENT: "Mount the host's /var/run/datadog read-write at /var/run/datadog",
    Reason.NOT_SOCKET: "The path is not the Agent's datagram socket",
    Reason.ECONNREFUSED: "The socket file exists but nothing listens on it",
    Reason.EAGAIN: "The Agent's receive queue is full",
}
"""How each reason's fix begins: the volume or setting it names."""


def _fault(config: Config, reason: Reason, *words: str, status: Status = Status.FAILED) -> None:
    outcome = dogstatsd_socket.run(CheckContext.of(config))
    assert (outcome.status, outcome.reason) == (status, reason), outcome.message
    assert str(config.dogstatsd_socket) in outcome.message
    assert outcome.remediation.startswith(FIXES[reason]), outcome.remediation
    for word in words:
        assert word in outcome.message


def test_missing_socket(socket_dir: Path, closed_port: int) -> None:
    config = make_config(DD_DOGSTATSD_SOCKET=socket_dir / "dsd.socket", DD_EXPVAR_PORT=closed_port)
    _fault(config, Reason.ENOENT, "(ENOENT)")


def test_regular_file_and_directory_are_not_sockets(socket_dir: Path, closed_port: int) -> None:
    regular = socket_dir / "dsd.socket"
    regular.write_text("")
    _fault(
        make_config(DD_DOGSTATSD_SOCKET=regular, DD_EXPVAR_PORT=closed_port),
        Reason.NOT_SOCKET,
        "regular file",
        "(ENOTSOCK)",
    )
    _fault(
        make_config(DD_DOGSTATSD_SOCKET=socket_dir, DD_EXPVAR_PORT=closed_port),
        Reason.NOT_SOCKET,
        "directory",
    )


def test_a_stream_socket_is_the_wrong_type(socket_dir: Path, closed_port: int) -> None:
    with stream_socket(socket_dir / "dsd.socket"):
        config = make_config(
            DD_DOGSTATSD_SOCKET=socket_dir / "dsd.socket", DD_EXPVAR_PORT=closed_port
        )
        _fault(config, Reason.NOT_SOCKET, "(EPROTOTYPE)", "datagram")


def test_stale_socket_file_is_econnrefused(socket_dir: Path, closed_port: int) -> None:
    stale = stale_socket(socket_dir / "dsd.socket")
    _fault(
        make_config(DD_DOGSTATSD_SOCKET=stale, DD_EXPVAR_PORT=closed_port),
        Reason.ECONNREFUSED,
        "(ECONNREFUSED)",
        "stale",
    )


def test_full_receive_queue_is_degraded_eagain(socket_dir: Path, closed_port: int) -> None:
    with DogStatsDReceiver(socket_dir / "dsd.socket", reading=False) as receiver:
        receiver.fill()
        config = make_config(DD_DOGSTATSD_SOCKET=receiver.path, DD_EXPVAR_PORT=closed_port)
        _fault(config, Reason.EAGAIN, "(EAGAIN)", "queue is full", status=Status.DEGRADED)


@pytest.mark.root
def test_agent_user_denied_on_0660_root_socket_then_allowed_with_its_group(
    socket_dir: Path, closed_port: int
) -> None:
    """UID 100 (the Agent image's dd-agent) on a 0660 root:root socket, then with group 0."""
    with DogStatsDReceiver(socket_dir / "dsd.socket", mode=0o660) as receiver:
        env = environment(DD_DOGSTATSD_SOCKET=receiver.path, DD_EXPVAR_PORT=closed_port)
        denied = selfcheck(["check", "--only", "dogstatsd_socket", "--json"], env, AS_AGENT_USER)
        result = denied.check("dogstatsd_socket")
        assert (result["status"], result["reason"]) == ("failed", "eacces"), result
        assert denied.code == 2  # required by default
        assert f"uid {AGENT_UID}, gid {AGENT_GID}" in result["message"]
        assert "supplementalGroups" in result["remediation"]
        assert "gid 0: add 0 to" in result["remediation"]

        with_group = ("setpriv", f"--reuid={AGENT_UID}", f"--regid={AGENT_GID}", "--groups=0")
        allowed = selfcheck(["check", "--only", "dogstatsd_socket", "--json"], env, with_group)
        # The send now works; a 0660 socket still shuts out clients of other users: degraded.
        result = allowed.check("dogstatsd_socket")
        assert (result["status"], result["reason"]) == ("degraded", "eacces"), allowed.stdout
        assert allowed.code == 1
        packets = receiver.wait_for(1)
    assert [p.uid for p in packets] == [AGENT_UID]


@pytest.mark.root
def test_agent_user_can_send_to_the_agents_0722_socket(socket_dir: Path, closed_port: int) -> None:
    with DogStatsDReceiver(socket_dir / "dsd.socket") as receiver:
        run = selfcheck(
            ["check", "--only", "dogstatsd_socket"],
            environment(DD_DOGSTATSD_SOCKET=receiver.path, DD_EXPVAR_PORT=closed_port),
            AS_AGENT_USER,
        )
        assert run.code == 0, run.stdout + run.stderr
        assert [p.uid for p in receiver.wait_for(1)] == [AGENT_UID]


def test_cli_report_shows_reason_and_remediation(socket_dir: Path, closed_port: int) -> None:
    stale = stale_socket(socket_dir / "dsd.socket")
    run = selfcheck(
        ["check", "--only", "dogstatsd_socket"],
        environment(DD_DOGSTATSD_SOCKET=stale, DD_EXPVAR_PORT=closed_port),
    )
    text = " ".join(run.stdout.split())
    assert run.code == 2
    assert f"{stale}: Connection refused (ECONNREFUSED)" in text
    assert "same dsdsocket volume (hostPath /var/run/datadog)" in text


def test_required_where_the_install_names_the_socket_unless_skipped_and_its_figures() -> None:
    checks = {"dogstatsd_socket": dogstatsd_socket.SPEC}
    pod = {"SELFCHECK_CONTAINERIZED": "true"}
    named = make_config(pod, DD_DOGSTATSD_SOCKET="/var/run/datadog/dsd.socket")
    assert required_ids(named, checks) == {"dogstatsd_socket"}
    assert required_ids(make_config(pod, DD_DOGSTATSD_PORT="0"), checks) == {"dogstatsd_socket"}
    assert required_ids(make_config(pod), checks) == set()  # UDS off: applications use UDP
    bare = {"SELFCHECK_CONTAINERIZED": "false"}  # the Agent's datadog.yaml, not read: default
    assert required_ids(make_config(bare), checks) == {"dogstatsd_socket"}
    skip = make_config(pod, DD_DOGSTATSD_SOCKET="/x", SELFCHECK_SKIP="dogstatsd_socket")
    assert required_ids(skip, checks) == set()
    assert set(dogstatsd_socket.SPEC.figures) == {
        "uds_packets",
        "uds_origin_detection_errors",
        "uds_packet_reading_errors",
        "service_checks_sent",
        "service_checks_dropped",
        "service_check_receipt_ok",
        "service_check_parse_errors",
    }
