"""The socket readers against real sockets: listeners, stale files, full queues, wedged peers.

The HTTP peers here are the Agent stand-ins from ``tests/support/standins.py`` (the Agent
cannot run on the test machine); the sockets, errnos and timeouts are the kernel's own.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.host.files import reason_for
from selfcheck.host.sockets import (
    Deadline,
    NotSocketError,
    ProtocolViolationError,
    classify,
    connect_unix,
    http_get,
    mode_octal,
    probe_stream,
    send_datagram,
    stat_socket,
)
from selfcheck.model import Reason
from tests.support.standins import (
    AgentHTTPStandIn,
    DogStatsDReceiver,
    TraceAgentStandIn,
    WedgedListener,
    free_port,
    stale_socket,
    stream_socket,
)

GENEROUS = 30.0
"""An upper bound that only proves "does not hang": the budgets under test are about 1 s and
the failures they guard against block for minutes or for ever, so a loaded machine that is
30 times slower still passes while a lost deadline still fails."""


def _reason(call: object) -> Reason:
    assert callable(call)
    with pytest.raises(OSError) as caught:
        call()
    return classify(caught.value)


def test_stat_socket_accepts_a_socket_and_names_what_else_it_found(socket_dir: Path) -> None:
    with DogStatsDReceiver(socket_dir / "dsd.socket") as receiver:
        assert mode_octal(stat_socket(receiver.path)) == "0722"
    regular = socket_dir / "file"
    regular.write_text("")
    with pytest.raises(NotSocketError) as caught:
        stat_socket(regular)
    assert classify(caught.value) is Reason.NOT_SOCKET
    assert "regular file" in str(caught.value)
    assert _reason(lambda: stat_socket(socket_dir)) is Reason.NOT_SOCKET
    assert _reason(lambda: stat_socket(socket_dir / "absent")) is Reason.ENOENT


def test_datagram_reaches_the_receiver_with_the_senders_credentials(socket_dir: Path) -> None:
    with DogStatsDReceiver(socket_dir / "dsd.socket") as receiver:
        sent = send_datagram(receiver.path, b"a.b:1|c")
        packets = receiver.wait_for(1)
    assert sent == len(b"a.b:1|c")
    assert [(p.data, p.pid, p.uid) for p in packets] == [(b"a.b:1|c", os.getpid(), os.getuid())]


def test_connect_only_sends_nothing(socket_dir: Path) -> None:
    with DogStatsDReceiver(socket_dir / "dsd.socket") as receiver:
        assert send_datagram(receiver.path, None) == 0
        assert receiver.wait_for(1, timeout=0.3) == []


def test_datagram_faults_have_their_errno(socket_dir: Path) -> None:
    stale = stale_socket(socket_dir / "stale.socket")
    assert _reason(lambda: send_datagram(stale, b"x:1|c")) is Reason.ECONNREFUSED
    with stream_socket(socket_dir / "stream.socket"):
        assert (
            _reason(lambda: send_datagram(socket_dir / "stream.socket", b"x")) is Reason.NOT_SOCKET
        )
    assert _reason(lambda: send_datagram(socket_dir / "absent", b"x")) is Reason.ENOENT


def test_a_full_receive_queue_is_eagain_without_blocking(socket_dir: Path) -> None:
    with DogStatsDReceiver(socket_dir / "dsd.socket", reading=False) as receiver:
        assert receiver.fill() > 0
        started = time.monotonic()
        assert _reason(lambda: send_datagram(receiver.path, b"x:1|c")) is Reason.EAGAIN
        assert time.monotonic() - started < GENEROUS


def test_stream_connect_to_a_datagram_socket_is_the_wrong_type(socket_dir: Path) -> None:
    with DogStatsDReceiver(socket_dir / "dsd.socket") as receiver:
        assert _reason(lambda: probe_stream(receiver.path)) is Reason.NOT_SOCKET
    stale = stale_socket(socket_dir / "stale.socket", socket.SOCK_STREAM)
    assert _reason(lambda: probe_stream(stale)) is Reason.ECONNREFUSED


def test_http_over_a_unix_socket_reads_the_answer(socket_dir: Path) -> None:
    with TraceAgentStandIn(socket_dir / "apm.socket", version="7.99.0") as apm:
        reply = http_get("http://localhost/info", 1.0, unix_socket=apm.path)
    assert reply.status == 200
    assert reply.json()["version"] == "7.99.0"


def test_http_faults_have_their_reason(socket_dir: Path) -> None:
    absent = socket_dir / "absent"
    assert _reason(lambda: http_get("http://localhost/", 1.0, unix_socket=absent)) is Reason.ENOENT
    stale = stale_socket(socket_dir / "stale.socket", socket.SOCK_STREAM)
    assert (
        _reason(lambda: http_get("http://localhost/", 1.0, unix_socket=stale))
        is Reason.ECONNREFUSED
    )
    with free_port() as port:
        assert _reason(lambda: http_get(f"http://127.0.0.1:{port}/", 1.0)) is Reason.ECONNREFUSED


@pytest.mark.parametrize("where", ["unix", "tcp"])
def test_a_listener_that_never_answers_is_a_bounded_timeout(socket_dir: Path, where: str) -> None:
    path = socket_dir / "wedged.socket" if where == "unix" else None
    with WedgedListener(path) as wedged:
        url = "http://localhost/info" if path else f"http://127.0.0.1:{wedged.port}/ready"
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            http_get(url, 0.5, unix_socket=path)
        assert time.monotonic() - started < GENEROUS
    assert classify(caught.value) is Reason.TIMEOUT
    assert "no answer within 0.5 s" in str(caught.value)


@pytest.fixture
def peer(socket_dir: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A unix listener that answers each connection with the next scripted reply."""
    path = socket_dir / "peer.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    replies: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                data = replies.pop(0) if replies else b""
                if data == b"TRICKLE":
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
                        try:
                            conn.send(bytes([byte]))
                        except OSError:
                            break
                        time.sleep(0.02)
                else:
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, replies
    server.shutdown(socket.SHUT_RDWR)
    server.close()


def test_a_peer_that_is_not_http_is_a_protocol_error(peer: tuple[Path, list[bytes]]) -> None:
    path, replies = peer
    replies += [b"SSH-2.0-OpenSSH_9.2\r\n", b""]
    for _ in range(2):
        with pytest.raises(ProtocolViolationError):
            http_get("http://localhost/info", 1.0, unix_socket=path)


def test_a_huge_answer_is_refused_at_the_cap(peer: tuple[Path, list[bytes]]) -> None:
    path, replies = peer
    body = b"x" * 4096
    replies.append(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n" + body)
    with pytest.raises(ProtocolViolationError, match="larger than 1024 bytes"):
        http_get("http://localhost/info", 1.0, unix_socket=path, cap=1024)


def test_a_peer_trickling_bytes_is_cut_by_the_overall_deadline(
    peer: tuple[Path, list[bytes]],
) -> None:
    path, replies = peer
    replies.append(b"TRICKLE")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        http_get("http://localhost/info", 0.5, unix_socket=path)
    assert time.monotonic() - started < GENEROUS


def test_http_to_the_health_stand_in_keeps_the_500_status() -> None:
    with AgentHTTPStandIn(unhealthy=["forwarder"]) as agent:
        reply = http_get(f"http://127.0.0.1:{agent.port}/ready", 1.0)
    assert reply.status == 500
    assert reply.json()["Unhealthy"] == ["forwarder"]


def test_deadline_runs_out() -> None:
    now = [0.0]
    deadline = Deadline(1.0, clock=lambda: now[0])
    assert deadline.left(0.5) == 0.5
    now[0] = 0.75
    assert deadline.left() == pytest.approx(0.25)
    now[0] = 1.0
    with pytest.raises(TimeoutError):
        deadline.left()


def test_connect_unix_honours_the_deadline(socket_dir: Path) -> None:
    with TraceAgentStandIn(socket_dir / "apm.socket") as apm:
        spent = Deadline(0.0)
        with pytest.raises(TimeoutError):
            connect_unix(apm.path, deadline=spent)
        connect_unix(apm.path).close()


def test_a_tcp_peer_trickling_its_answer_cannot_outlast_the_deadline() -> None:
    """requests' read timeout is per receive; one overall deadline must bound the exchange."""
    from selfcheck.host.sockets import http_get

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"x")
            except OSError:
                break
            time.sleep(0.1)
        conn.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    began = time.monotonic()
    try:
        with pytest.raises(OSError) as caught:
            http_get(f"http://127.0.0.1:{port}/ready", 0.6)
        assert reason_for(caught.value) == Reason.TIMEOUT
        # 0.6 s budget; the trickle lasts 100 s (1,000 bytes, one per 0.1 s) without it
        assert time.monotonic() - began < GENEROUS
    finally:
        stop.set()
        server.close()
        thread.join(2)
