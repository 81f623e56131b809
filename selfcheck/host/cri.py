"""One CRI call, ``runtime.v1.RuntimeService/Version``, over the runtime's unix socket.

That is the call the kubelet and the Agent's CRI client make first, and it answers the
runtime's name and version: proof the socket speaks CRI, not only that it accepts.

Why ``h2`` and not ``grpcio``: a unary gRPC call is one HTTP/2 stream (headers, one
length-prefixed message, trailers), and HTTP/2 itself (framing, HPACK with its Huffman
tables, flow control, settings) is exactly what ``h2`` does as a well-kept pure-Python
library of about 1 MB. ``grpcio`` adds about 19 MB on disk and 18 MiB resident on import
(measured on Python 3.11), more than half of this sidecar's 35 MB budget, and starts
threads of its own. What is written here is only gRPC's five-byte message prefix, the
status trailers, and the four string fields of two tiny protobuf messages (field numbers
from the CRI's api.proto: VersionResponse version=1, runtime_name=2, runtime_version=3,
runtime_api_version=4), which would not justify the protobuf runtime either.
"""

from __future__ import annotations

import socket
import struct
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from selfcheck.host.sockets import (
    CONNECT_TIMEOUT,
    Deadline,
    DeadlineSocket,
    Path,
    ProtocolViolationError,
    connect_unix,
)

if TYPE_CHECKING:
    import h2.connection

VERSION_METHOD = "/runtime.v1.RuntimeService/Version"
RESPONSE_CAP = 64 * 1024
GRPC_STATUS_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}
_VERSION_FIELDS = {1: "version", 2: "runtime_name", 3: "runtime_version", 4: "runtime_api_version"}


@dataclass(frozen=True, slots=True)
class CriVersion:
    version: str
    runtime_name: str
    runtime_version: str
    runtime_api_version: str


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ProtocolViolationError("truncated protobuf varint")


def decode_string_fields(data: bytes) -> dict[int, str]:
    """The length-delimited fields of a protobuf message; others are skipped as the spec says."""
    fields: dict[int, str] = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise ProtocolViolationError("truncated protobuf field")
            fields[number] = data[pos : pos + length].decode("utf-8", errors="replace")
            pos += length
        else:
            raise ProtocolViolationError(f"unexpected protobuf wire type {wire}")
        if pos > len(data):
            raise ProtocolViolationError("truncated protobuf field")
    return fields


def decode_version(message: bytes) -> CriVersion:
    fields = decode_string_fields(message)
    values = {name: fields.get(number, "") for number, name in _VERSION_FIELDS.items()}
    return CriVersion(**values)


def grpc_frame(message: bytes) -> bytes:
    """gRPC's length-prefixed message: a compressed flag (0) and a 4-byte big-endian length."""
    return struct.pack(">BI", 0, len(message)) + message


def grpc_unframe(data: bytes) -> bytes:
    if len(data) < 5:
        raise ProtocolViolationError(f"gRPC message of {len(data)} bytes, shorter than its prefix")
    compressed, length = struct.unpack(">BI", data[:5])
    if compressed:
        raise ProtocolViolationError("compressed gRPC message (none was offered)")
    if len(data) - 5 < length:
        raise ProtocolViolationError("truncated gRPC message")
    return data[5 : 5 + length]


def version(
    path: Path, timeout: float | Deadline, connect_timeout: float = CONNECT_TIMEOUT
) -> CriVersion:
    """Call ``RuntimeService/Version`` on ``path`` within ``timeout`` (seconds or a deadline).

    Raises the connect's ``OSError`` (``ENOENT``, ``EACCES``, ``ECONNREFUSED``...),
    ``TimeoutError``, or ``ProtocolViolationError`` when the peer is not a CRI server
    (not HTTP/2, a gRPC status other than OK, e.g. ``UNIMPLEMENTED`` when the CRI plugin is
    disabled).
    """
    deadline = Deadline.of(timeout)
    with connect_unix(path, socket.SOCK_STREAM, deadline, connect_timeout) as sock:
        return _call(sock, deadline)


def _call(sock: DeadlineSocket, deadline: Deadline) -> CriVersion:
    import h2.config
    import h2.connection
    import h2.exceptions

    conn = h2.connection.H2Connection(
        # Headers stay bytes: ``_text_headers`` decodes them leniently (a peer that sends
        # non-UTF-8 must be a protocol error, not a UnicodeDecodeError inside h2).
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    millis = max(1, int(deadline.left() * 1000))
    conn.send_headers(
        stream,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", VERSION_METHOD),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", f"{millis}m"),
            ("user-agent", "selfcheck"),
        ],
    )
    conn.send_data(stream, grpc_frame(b""), end_stream=True)
    sock.sendall(conn.data_to_send())
    try:
        headers, body = _exchange(sock, conn, stream)
    except h2.exceptions.ProtocolError as error:
        raise ProtocolViolationError(f"not an HTTP/2 (gRPC) server: {error}") from None
    _check_status(headers)
    return decode_version(grpc_unframe(body))


def _exchange(
    sock: DeadlineSocket, conn: h2.connection.H2Connection, stream: int
) -> tuple[dict[str, str], bytes]:
    """Read frames until the stream ends; the merged headers and trailers, and the data."""
    import h2.events

    headers: dict[str, str] = {}
    body = bytearray()
    while True:
        data = sock.recv(65536)
        if not data:
            raise ProtocolViolationError(
                "the peer closed the connection without an HTTP/2 answer: not a CRI (gRPC) server"
            )
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                headers.update(_text_headers(event.headers or []))
            elif isinstance(event, h2.events.DataReceived):
                body += event.data or b""
                if len(body) > RESPONSE_CAP:
                    raise ProtocolViolationError(f"answer larger than {RESPONSE_CAP} bytes")
                conn.acknowledge_received_data(event.flow_controlled_length or 0, stream)
            elif isinstance(event, h2.events.StreamReset):
                raise ProtocolViolationError(
                    f"the runtime reset the call (code {event.error_code})"
                )
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise ProtocolViolationError(
                    f"the runtime ended the connection ({event.error_code})"
                )
            elif isinstance(event, h2.events.StreamEnded):
                return headers, bytes(body)
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)


def _text_headers(pairs: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:  # type: ignore[attr-defined]
        # A peer that is not a gRPC server may send any bytes: never UnicodeDecodeError.
        key = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        out[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return out


def _check_status(headers: dict[str, str]) -> None:
    if headers.get(":status") != "200":
        raise ProtocolViolationError(f"HTTP/2 status {headers.get(':status')}, not a gRPC answer")
    raw = headers.get("grpc-status")
    if raw is None:
        raise ProtocolViolationError("no grpc-status in the answer: not a gRPC server")
    code = int(raw) if raw.isascii() and raw.isdigit() else -1  # "²".isdigit() is true
    if code != 0:
        name = GRPC_STATUS_NAMES.get(code, str(code))
        detail = urllib.parse.unquote(headers.get("grpc-message", ""))[:200]
        raise ProtocolViolationError(f"gRPC {VERSION_METHOD} returned {name}: {detail}")
