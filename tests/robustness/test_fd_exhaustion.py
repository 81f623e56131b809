"""File descriptor exhaustion: the server refuses, the checks report EMFILE, both recover.

``selfcheck serve`` runs with ``RLIMIT_NOFILE`` at 64 (as ``ulimit -n 64`` would set it)
and a check cycle every 0.2 s. The test opens kept-alive connections, each asking
``/livez``, until the server can take no more: from then on a new client must get an
immediate ``503`` (the server answers it through a descriptor it keeps in reserve), never
a hang of the server itself. The
connections stay open across several check cycles, so every check that opens a file or a
socket meets ``EMFILE`` and must report it as its error, not raise. Then the connections
close and the server must serve 200 again, the checks pass again, and its log must hold
one JSON line about the exhaustion, not a traceback per ``accept()``.
"""

from __future__ import annotations

import json
import math
import socket
import time

from selfcheck.http.server import RESOURCE_LOG_EVERY
from tests.robustness.conftest import ServeProcess, serve

LIMIT = 64
MAX_CLIENTS = 300
REQUEST = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"


def _connect(server: ServeProcess) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=1)
    try:
        sock.sendall(REQUEST)
        return sock, sock.recv(4096)
    except TimeoutError:
        return sock, b""


def _exhaust(server: ServeProcess) -> tuple[list[socket.socket], bytes]:
    """Connections until one is refused; returns them and the refusal (b"" if unanswered)."""
    held = []
    for _ in range(MAX_CLIENTS):
        sock, reply = _connect(server)
        held.append(sock)
        if not reply.startswith(b"HTTP/1.1 200"):
            return held, reply
    raise AssertionError(f"{MAX_CLIENTS} connections accepted under RLIMIT_NOFILE={LIMIT}")


def _log_lines(server: ServeProcess) -> list[dict[str, object]]:
    lines = server.log_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _emfile_lines(server: ServeProcess) -> list[dict[str, object]]:
    return [
        line
        for line in _log_lines(server)
        if line.get("msg") == "check status changed" and "EMFILE" in str(line.get("message"))
    ]


def _wait_for_emfile(server: ServeProcess, timeout: float = 20.0) -> None:
    """Until a check has logged its ``EMFILE`` (a cycle ran at the limit), not a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not _emfile_lines(server):
        assert time.monotonic() < deadline, f"no check met EMFILE in {timeout:g} s"
        assert server.proc.poll() is None, server.stderr()
        time.sleep(0.05)


def test_at_the_limit_each_new_client_gets_an_immediate_503() -> None:
    """One cycle an hour: no check takes a descriptor meanwhile, so the spare one is the
    server's own and every client past the limit gets the 503, none silence."""
    with serve({"SELFCHECK_INTERVAL": "3600"}, nofile=LIMIT) as server:
        held, refusal = _exhaust(server)
        try:
            replies = [refusal]
            for _ in range(3):
                sock, reply = _connect(server)
                held.append(sock)
                replies.append(reply)
            for reply in replies:
                assert reply.startswith(b"HTTP/1.1 503 "), reply
                assert b"out of file descriptors" in reply
        finally:
            for sock in held:
                sock.close()
        server.wait_for("/livez", timeout=10)
        assert server.proc.poll() is None


def test_out_of_descriptors_the_checks_report_emfile_and_all_recovers() -> None:
    """A cycle every 0.2 s: the checks meet the limit too (and may take the spare descriptor
    the 503s need, which the test above covers without them)."""
    began = time.monotonic()
    with serve({"SELFCHECK_INTERVAL": "0.2"}, nofile=LIMIT) as server:
        held, _ = _exhaust(server)
        try:
            assert len(held) < LIMIT
            _wait_for_emfile(server)
            assert server.proc.poll() is None
        finally:
            for sock in held:
                sock.close()
        server.wait_for("/livez", timeout=10)
        server.wait_for("/readyz", timeout=10)  # the checks pass again
        status, body, _ = server.request("/metrics")
        assert status == 200
        failures = [
            line
            for line in body.decode().splitlines()
            if line.startswith('selfcheck_check_failures_total{check="procfs"}')
        ]
        assert failures and float(failures[0].rsplit(" ", 1)[1]) >= 1, failures
    elapsed = time.monotonic() - began
    emfile = _emfile_lines(server)
    assert emfile, server.stderr()
    assert {line["status"] for line in emfile} <= {"failed", "degraded", "error"}
    assert not any(line.get("status") == "error" for line in emfile), emfile  # no check raised
    lines = _log_lines(server)
    exhausted = [line for line in lines if str(line.get("msg")).startswith("out of file")]
    # one line per RESOURCE_LOG_EVERY at most, however long a loaded machine took
    assert 1 <= len(exhausted) <= 1 + math.ceil(elapsed / RESOURCE_LOG_EVERY), exhausted
    assert "Traceback" not in server.log_text()
