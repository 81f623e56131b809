"""dogstatsd_udp against real UDP sockets and a stand-in of the Agent's expvar endpoint.

The Datadog Agent cannot run here, so its UDP listener and ``/debug/vars`` are played by
``tests/support/agent_standin.py`` (``--udp``), counting like the Agent's
comp/dogstatsd/listeners/udp.go; the ports, the kernel's ICMP refusals and the datagrams are
real. Every port is one the kernel handed out (bound to port 0), never a fixed one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from selfcheck.checks import dogstatsd_socket, dogstatsd_udp
from selfcheck.config import SOCKET, UDP, Config
from selfcheck.context import CheckContext
from selfcheck.host.eyes import own_eyes
from selfcheck.host.view import HostView
from selfcheck.model import Reason, Status
from selfcheck.registry import required_ids
from tests.support.configs import make_config, settled
from tests.support.pod import TMPFS, Pod, Spec, Volume, new_pod, pods
from tests.support.standins import agent_standin, free_port

POD = {"SELFCHECK_CONTAINERIZED": "true"}
"""A container's environment: the install's, where no DD_DOGSTATSD_SOCKET means UDS off."""
CHECKS = {"dogstatsd_socket": dogstatsd_socket.SPEC, "dogstatsd_udp": dogstatsd_udp.SPEC}


@contextlib.contextmanager
def udp_port() -> Iterator[int]:
    """A loopback UDP port nothing listens on (handed out by the kernel, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    yield port


@pytest.fixture
def closed_port() -> Iterator[int]:
    with free_port() as port:
        yield port


def udp_config(port: int, expvar: int, **settings: str) -> Config:
    base = {**POD, "DD_DOGSTATSD_NON_LOCAL_TRAFFIC": "true"}
    return make_config(base, DD_DOGSTATSD_PORT=port, DD_EXPVAR_PORT=expvar, **settings)


def node_view(config: Config, address: str | None) -> HostView:
    """A node-mode pod's view: the Agent's network namespace is another, at ``address``."""
    eyes = replace(own_eyes("test"), shares_loopback=False, agent_address=address)
    return HostView(config.host_proc, config.cgroup_root, eyes)


def test_the_transport_is_the_installs() -> None:
    uds_off = make_config(POD, DD_DOGSTATSD_NON_LOCAL_TRAFFIC="true")
    assert uds_off.dogstatsd_transport == UDP
    assert required_ids(uds_off, CHECKS) == {"dogstatsd_udp"}
    chart = make_config(
        POD, DD_DOGSTATSD_SOCKET="/var/run/datadog/dsd.socket", DD_DOGSTATSD_NON_LOCAL_TRAFFIC="1"
    )
    assert chart.dogstatsd_transport == SOCKET
    assert required_ids(chart, CHECKS) == {"dogstatsd_socket", "dogstatsd_udp"}
    local = make_config(POD, DD_DOGSTATSD_SOCKET="/var/run/datadog/dsd.socket")
    assert required_ids(local, CHECKS) == {"dogstatsd_socket"}
    assert "loopback only" in dogstatsd_udp.SPEC.unused(local)
    closed = make_config(POD, DD_DOGSTATSD_PORT="0")
    assert closed.dogstatsd_transport == SOCKET
    assert required_ids(closed, CHECKS) == {"dogstatsd_socket"}
    assert "DD_DOGSTATSD_PORT is 0" in dogstatsd_udp.SPEC.unused(closed)


def test_the_agents_values_are_parsed_the_agents_way() -> None:
    """spf13/cast for the port (base 0, a zero decimal part), Go ParseBool for the switch;
    what the Agent rejects is a note and the value the Agent reads in its place."""
    config = make_config(POD, DD_DOGSTATSD_PORT="0x1FBD", DD_DOGSTATSD_NON_LOCAL_TRAFFIC="True")
    assert (config.dogstatsd_port, config.dogstatsd_non_local_traffic) == (8125, True)
    assert make_config(POD, DD_DOGSTATSD_PORT="8126.0").dogstatsd_port == 8126
    bad = make_config(POD, DD_DOGSTATSD_PORT="eight", DD_DOGSTATSD_NON_LOCAL_TRAFFIC="yes")
    assert (bad.dogstatsd_port, bad.dogstatsd_non_local_traffic) == (0, False)
    assert any(n.startswith("DD_DOGSTATSD_PORT='eight'") for n in bad.agent_notes)
    assert any(n.startswith("DD_DOGSTATSD_NON_LOCAL_TRAFFIC='yes'") for n in bad.agent_notes)


def test_the_agent_counts_the_datagram(socket_dir: Path) -> None:
    with (
        udp_port() as port,
        free_port() as expvar,
        agent_standin(socket_dir, expvar, "--udp", str(port)),
    ):
        outcome = dogstatsd_udp.run(CheckContext.of(udp_config(port, expvar)))
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK), outcome.message
    assert outcome.details["packets_delta"] == 1
    assert outcome.details["dogstatsd_udp"]["Packets"] >= 1
    assert outcome.figures["udp_packets"] >= 1
    assert f"udp://127.0.0.1:{port}: sent a" in outcome.message
    assert "the Agent counted it in dogstatsd-udp.Packets" in outcome.message


def test_a_closed_port_fails_naming_the_port_and_the_setting(closed_port: int) -> None:
    with udp_port() as port:
        outcome = settled(dogstatsd_udp.SPEC, CheckContext.of(udp_config(port, closed_port)))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ECONNREFUSED)
    assert f"udp://127.0.0.1:{port}: Connection refused (ECONNREFUSED)" in outcome.message
    assert f"DogStatsD UDP port {port}" in outcome.message
    for setting in ("DD_DOGSTATSD_PORT", "datadog.dogstatsd.port", "hostPortConfig"):
        assert setting in outcome.remediation


def test_a_port_another_process_holds_is_not_received(socket_dir: Path) -> None:
    """The Agent's expvar answers, something else takes the datagrams: its count stays."""
    with (
        udp_port() as port,
        free_port() as expvar,
        agent_standin(socket_dir, expvar),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter,
    ):
        squatter.bind(("127.0.0.1", port))
        outcome = dogstatsd_udp.run(CheckContext.of(udp_config(port, expvar)))
        assert squatter.recv(100) == b"datadog.selfcheck.heartbeat:1|c"
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.NOT_RECEIVED)
    assert "dogstatsd-udp.Packets" in outcome.message and "did not grow" in outcome.message


def test_without_expvar_loopback_silence_is_a_bound_port(closed_port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        outcome = dogstatsd_udp.run(CheckContext.of(udp_config(port, closed_port)))
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK), outcome.message
    assert "not refused (loopback refuses a closed port at once" in outcome.message
    assert "not read" in outcome.details["expvar"]


def test_udp_only_on_the_agents_loopback_fails_not_shared(closed_port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = udp_config(port, closed_port, DD_DOGSTATSD_NON_LOCAL_TRAFFIC="false")
        outcome = dogstatsd_udp.run(CheckContext.of(config))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.NOT_SHARED)
    assert "loopback only" in outcome.message
    assert "datadog.dogstatsd.nonLocalTraffic" in outcome.remediation


def test_node_mode_sends_to_the_agent_pods_address(closed_port: int) -> None:
    """No shared loopback: the Agent pod's address with non-local traffic; a refusal there is
    a failure, silence with no receipt to read is unproven, never ok."""
    with udp_port() as port:
        config = udp_config(port, closed_port)
        refused = dogstatsd_udp.run(CheckContext(config, node_view(config, "127.0.0.1"), 1e12))
    assert (refused.status, refused.reason) == (Status.FAILED, Reason.ECONNREFUSED)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        config = udp_config(listener.getsockname()[1], closed_port)
        silent = dogstatsd_udp.run(CheckContext(config, node_view(config, "127.0.0.1"), 1e12))
        assert listener.recv(100) == b"datadog.selfcheck.heartbeat:1|c"
    assert (silent.status, silent.reason) == (Status.SKIPPED, Reason.NOT_APPLICABLE)
    assert "unproven" in silent.message


def test_node_mode_with_a_loopback_only_agent_says_why(closed_port: int) -> None:
    config = udp_config(8125, closed_port, DD_DOGSTATSD_NON_LOCAL_TRAFFIC="false")
    outcome = dogstatsd_udp.run(CheckContext(config, node_view(config, "10.0.0.7"), 1e12))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.NOT_SHARED)
    assert "no way to send metrics to this Agent" in outcome.message
    chart = replace(config, dogstatsd_socket_offered=True)
    outcome = dogstatsd_udp.run(CheckContext(chart, node_view(chart, "10.0.0.7"), 1e12))
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, Reason.NOT_APPLICABLE)
    assert "out of reach from another pod" in outcome.message


def test_a_closed_port_and_connect_mode_are_skipped_with_why(closed_port: int) -> None:
    closed = settled(dogstatsd_udp.SPEC, CheckContext.of(udp_config(0, closed_port)))
    assert (closed.status, closed.reason) == (Status.SKIPPED, Reason.NOT_ENABLED)
    assert "DD_DOGSTATSD_PORT" in closed.message
    connect = udp_config(8125, closed_port, SELFCHECK_DOGSTATSD_MODE="connect")
    outcome = dogstatsd_udp.run(CheckContext.of(connect))
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, Reason.DISABLED)


def test_the_socket_check_is_not_enabled_over_udp(closed_port: int) -> None:
    config = udp_config(8125, closed_port)
    outcome = settled(dogstatsd_socket.SPEC, CheckContext.of(config))
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, Reason.NOT_ENABLED)
    assert outcome.message.startswith("DD_DOGSTATSD_SOCKET is not set in the Agent's environment")
    assert "UDP port 8125" in outcome.message


# --- a real pod of two containers: an install with DogStatsD over UDS off ---------------------

ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0, reason="cgroups, mounts, netns and chroot need root"
)


def uds_off_agent(pod_uid: str, netns: str, **env: str) -> Spec:
    """The Operator's pod with UDS off (or the chart's ``useSocketVolume: false``): the socket
    directory an emptyDir (a tmpfs of the container's own) where a current Agent still binds
    its default socket, UDP 8125 on every address, expvar on the Agent's 5000."""
    volumes = [
        Volume("procdir", None, "/host/proc"),
        Volume("cgroups", "/sys/fs/cgroup", "/host/sys/fs/cgroup"),
        Volume("dsdsocket", TMPFS, "/var/run/datadog", read_only=False),
    ]
    base = {
        "DD_DOGSTATSD_PORT": "8125",
        "DD_DOGSTATSD_NON_LOCAL_TRAFFIC": "true",
        "DD_EXPVAR_PORT": "5000",
        "SA_DSD": "1",
        "SA_EXPVAR": "1",
    }
    return Spec(pod_uid, volumes, env={**base, **env}, read_only_root=True, net_ns=netns)


def sidecar_report(pod: Pod, pod_uid: str, netns: str) -> tuple[int, dict[str, Any]]:
    """``selfcheck check --json`` in a second container of the pod, with no host mount."""
    spec = Spec(pod_uid, [], env={}, read_only_root=True, net_ns=netns)
    done = pod.selfcheck(spec, ["check", "--json", "--only", "dogstatsd_socket,dogstatsd_udp"])
    assert done.stdout, done.stderr[-3000:]
    report = json.loads(done.stdout)
    return done.returncode, {r["check"]: r for r in report["checks"]}


@pytest.mark.root
@pytest.mark.slow
@ROOT_ONLY
@pytest.mark.parametrize(
    "socket_env",
    [{}, {"DD_DOGSTATSD_SOCKET": "/var/run/datadog/dsd.socket"}],
    ids=["operator-uds-off", "chart-use-socket-volume-false"],
)
def test_a_pod_with_uds_off_judges_the_udp_path(socket_env: dict[str, str]) -> None:
    with pods() as pod:
        uid, netns = new_pod(), pod.new_netns()
        pod.start_agent(uds_off_agent(uid, netns, SA_UDP="1", **socket_env))
        code, checks = sidecar_report(pod, uid, netns)
    dsd, udp = checks["dogstatsd_socket"], checks["dogstatsd_udp"]
    assert (dsd["status"], dsd["reason"]) == ("skipped", "not_enabled"), dsd
    if socket_env:  # named for the Agent's own containers, in a directory no other pod has
        assert dsd["required"] is True
        assert "serves only the Agent's own pod" in dsd["message"]
    else:  # not named at all: applications were never given a socket
        assert dsd["required"] is False
        assert dsd["message"].startswith("DD_DOGSTATSD_SOCKET is not set"), dsd
        assert "would be failed (not_shared)" in dsd["message"]
    assert (udp["status"], udp["reason"], udp["view"]) == ("ok", "ok", "agent"), udp
    assert udp["required"] is True
    assert udp["details"]["packets_delta"] == 1
    assert "udp://127.0.0.1:8125: sent a" in udp["message"]
    assert code == 0


@pytest.mark.root
@pytest.mark.slow
@ROOT_ONLY
def test_a_pod_whose_agent_does_not_listen_on_udp_fails_naming_the_port() -> None:
    with pods() as pod:
        uid, netns = new_pod(), pod.new_netns()
        pod.start_agent(uds_off_agent(uid, netns))
        code, checks = sidecar_report(pod, uid, netns)
    dsd, udp = checks["dogstatsd_socket"], checks["dogstatsd_udp"]
    assert dsd["status"] == "skipped", dsd
    assert (udp["status"], udp["reason"]) == ("failed", "econnrefused"), udp
    assert "the Agent's DogStatsD UDP port 8125" in udp["message"]
    assert "DD_DOGSTATSD_PORT" in udp["remediation"]
    assert code == 2
