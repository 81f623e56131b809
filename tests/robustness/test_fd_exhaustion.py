"""File descriptor exhaustion: the server refuses, the checks report EMFILE, both recover.

``selfcheck serve`` runs with ``RLIMIT_NOFILE`` at 64 (as ``ulimit -n 64`` would set it)
and a check cycle every 0.2 s. The test opens kept-alive connections, each asking
``/livez``, until the server can take no more: from then on a new client must get an
immediate ``503`` (the server answers it through a descriptor it keeps in reserve) or,
while even that one is taken, no answer, never a hang of the server itself. The
connections stay open across several check cycles, so every check that opens a file or a
socket meets ``EMFILE`` and must report it as its error, not raise. Then the connections
close and the server must serve 200 again, the checks pass again, and its log must hold
one JSON line about the exhaustion, not a traceback per ``accept()``.
"""

from __future__ import annotations

import json
import socket
import time

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


def test_out_of_descriptors_the_server_refuses_checks_report_emfile_and_all_recovers() -> None:
    with serve({"SELFCHECK_INTERVAL": "0.2"}, nofile=LIMIT) as server:
        held, refusal = _exhaust(server)
        try:
            assert len(held) < LIMIT
            assert refusal == b"" or refusal.startswith(b"HTTP/1.1 503"), refusal
            if refusal:
                assert b"out of file descriptors" in refusal
            time.sleep(1.0)  # five cycles with no descriptor to spare
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
    lines = _log_lines(server)
    emfile = [
        line
        for line in lines
        if line.get("msg") == "check status changed" and "EMFILE" in str(line.get("message"))
    ]
    assert emfile, server.stderr()
    assert {line["status"] for line in emfile} <= {"failed", "degraded", "error"}
    assert not any(line.get("status") == "error" for line in emfile), emfile  # no check raised
    exhausted = [line for line in lines if str(line.get("msg")).startswith("out of file")]
    assert 1 <= len(exhausted) <= 3, exhausted
    assert "Traceback" not in server.log_text()
