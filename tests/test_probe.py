"""``selfcheck probe``: an exit code within its timeout, whatever the server does.

The kubelet gives an exec probe one second by default and kills it after that, which it
counts as a failure without the probe's own message. So the probe must give up by itself
under one overall deadline: against a listener that accepts and never answers, and
against one that trickles its answer a byte at a time (each byte well inside a per-read
timeout, the whole never), it must exit 1 saying why. These tests bound that only by the
subprocess timeout (no timed assertion: a loaded machine may take longer to start
Python); ``bench/probe.py`` measures the seconds.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.run import selfcheck
from tests.support.standins import WedgedListener

BOUND = 20.0
"""Far below what the trickling peer below would take to finish (about a minute)."""


@pytest.fixture
def trickling_port() -> Iterator[int]:
    """A loopback server that answers every request one byte every 0.2 s, for a minute."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.1)
    stop = threading.Event()
    answer = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 300 + b"\r\nContent-Length: 3\r\n\r\nok\n"

    def trickle(conn: socket.socket) -> None:
        with conn:
            for byte in answer:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        server.close()


@pytest.mark.parametrize("kind", ["live", "ready", "startup"])
def test_a_server_that_never_answers_gets_exit_1_within_the_timeout(kind: str) -> None:
    with WedgedListener() as wedged:
        run = selfcheck(["probe", kind, "--listen", f"127.0.0.1:{wedged.port}"], timeout=BOUND)
    assert run.code == 1
    assert "no answer within 1 s" in run.stderr, run.stderr
    assert run.stdout == ""


def test_a_server_trickling_its_answer_cannot_hold_the_probe(trickling_port: int) -> None:
    run = selfcheck(["probe", "live", "--listen", f"127.0.0.1:{trickling_port}"], timeout=BOUND)
    assert run.code == 1
    assert "no answer within 1 s" in run.stderr, run.stderr


def test_the_timeout_flag_sets_the_deadline() -> None:
    with WedgedListener() as wedged:
        args = ["probe", "live", "--listen", f"127.0.0.1:{wedged.port}", "--timeout", "0.3"]
        run = selfcheck(args, timeout=BOUND)
    assert run.code == 1
    assert "no answer within 0.3 s" in run.stderr, run.stderr
