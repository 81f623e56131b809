"""The CRI Version call against a real containerd, and its encoding against fixed bytes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from selfcheck.host import cri
from selfcheck.host.sockets import ProtocolViolationError, classify
from selfcheck.model import Reason
from tests.support.daemons import ContainerdDaemon, DockerDaemon
from tests.support.protobuf import string_field
from tests.support.standins import WedgedListener, stale_socket


def test_version_response_decodes_its_four_fields_and_skips_others() -> None:
    message = (
        string_field(1, "0.1.0")
        + b"\x28\x96\x01"  # field 5, varint 150: unknown, skipped
        + string_field(2, "containerd")
        + string_field(3, "v1.7.0")
        + string_field(4, "v1")
    )
    assert cri.decode_version(cri.grpc_unframe(cri.grpc_frame(message))) == cri.CriVersion(
        "0.1.0", "containerd", "v1.7.0", "v1"
    )


@pytest.mark.parametrize(
    "data",
    [b"\x0a\x05abc", b"\x0a", b"\x0f", b"\x80"],
    ids=["short-string", "no-length", "wire-type-7", "endless-varint"],
)
def test_garbled_protobuf_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolViolationError):
        cri.decode_string_fields(data)


def test_grpc_frame_checks_its_prefix() -> None:
    assert cri.grpc_frame(b"ab") == b"\x00\x00\x00\x00\x02ab"
    for bad in (b"\x00\x00", b"\x01\x00\x00\x00\x00", b"\x00\x00\x00\x00\x09ab"):
        with pytest.raises(ProtocolViolationError):
            cri.grpc_unframe(bad)


@pytest.mark.containerd
def test_real_containerd_answers_its_own_version(containerd_daemon: ContainerdDaemon) -> None:
    answer = cri.version(containerd_daemon.socket, 2.0)
    assert answer.runtime_name == "containerd"
    assert answer.runtime_version == containerd_daemon.version()
    assert answer.runtime_api_version == "v1"


@pytest.mark.docker
def test_dockerd_is_not_a_cri_server(dockerd_daemon: DockerDaemon) -> None:
    """An HTTP/1.1 server answering an HTTP/2 preface: a protocol error, not a hang."""
    with pytest.raises(OSError) as caught:
        cri.version(dockerd_daemon.socket, 2.0)
    assert classify(caught.value) is Reason.PROTOCOL_ERROR


@pytest.mark.docker
def test_containerd_without_its_cri_plugin_is_unimplemented(dockerd_daemon: DockerDaemon) -> None:
    """dockerd's own containerd runs with ``disabled_plugins = ["cri"]``: a real gRPC error."""
    managed = dockerd_daemon.directory / "exec" / "containerd" / "containerd.sock"
    with pytest.raises(ProtocolViolationError, match="UNIMPLEMENTED"):
        cri.version(managed, 2.0)


def test_wedged_and_stale_sockets(socket_dir: Path) -> None:
    with WedgedListener(socket_dir / "wedged.sock"), pytest.raises(TimeoutError):
        cri.version(socket_dir / "wedged.sock", 0.3)
    stale = stale_socket(socket_dir / "stale.sock", socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        cri.version(stale, 0.3)
