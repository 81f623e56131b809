"""Idle and slow clients (slowloris) cannot starve the kubelet's probes.

500 connections are held open against a real ``selfcheck serve`` (a third send nothing, a
third send half a request head, a third trickle it a byte at a time) while fresh probes of
``/livez`` and ``/readyz`` must answer 200 before ``PROBE_TIMEOUT``, which is shorter than the
server's 5 s idle timeout: a server that served clients one at a time, or waited on an idle one
before a fresh one, answers only after an idle client is dropped, and misses it on any machine.
How fast probes answer under load is measured, not asserted: ``bench/http_load.py``
(docs/performance.md). Then the server's own idle timeout must close the held sockets.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable

from tests.robustness.conftest import ServeProcess, raise_nofile, serve

HELD = 500
PROBE_ROUNDS = 10
PROBE_TIMEOUT = 4.0
"""Shorter than the server's idle timeout (5 s), longer than any load makes a probe."""
PARTIAL = b"GET /livez HTTP/1.1\r\nHost: x\r\nUser-Agent: slow"


def _hold(server: ServeProcess, count: int) -> list[socket.socket]:
    held = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        if i % 3 == 1:
            sock.sendall(PARTIAL)
        elif i % 3 == 2:
            sock.sendall(PARTIAL[:1])
        held.append(sock)
    return held


def _trickle(held: list[socket.socket], step: int) -> None:
    for sock in held[2::3]:
        # The server may already have closed it: that is the defence working.
        with contextlib.suppress(OSError):
            sock.sendall(PARTIAL[step % len(PARTIAL) : step % len(PARTIAL) + 1])


def _probe_under_siege(server: ServeProcess, held: list[socket.socket]) -> list[float]:
    times = []
    for round_ in range(PROBE_ROUNDS):
        _trickle(held, round_ + 1)
        for path in ("/livez", "/readyz"):
            status, _, seconds = server.request(path, timeout=PROBE_TIMEOUT)
            assert status == 200, (path, status, server.stderr())
            times.append(seconds)
        time.sleep(0.05)
    return times


def _wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def _count_closed_by_server(socks: list[socket.socket], within: float) -> int:
    """How many of ``socks`` the server closes before ``within`` seconds have passed: one
    deadline for all (a per-socket budget taken from what is left would go negative)."""
    deadline = time.monotonic() + within
    open_ = set(socks)
    for sock in socks:
        sock.setblocking(False)
    while open_ and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(list(open_), [], [], min(left, 1.0))
        for sock in readable:
            try:
                if sock.recv(4096):
                    continue  # an answer (a 408, say): the close follows
            except BlockingIOError:
                continue
            except OSError:
                pass  # reset by the server: closed too
            open_.discard(sock)
    return len(socks) - len(open_)


def test_probes_answer_while_500_slow_clients_hold_connections() -> None:
    raise_nofile(4 * HELD)
    with serve({"SELFCHECK_INTERVAL": "0.5"}) as server:
        held = _hold(server, HELD)
        try:
            _wait_until(lambda: server.fds() >= HELD, 10)  # it holds them all, refused none
            assert len(_probe_under_siege(server, held)) == 2 * PROBE_ROUNDS
            # 5 s after the server started waiting, every held socket is closed by it,
            # including the ones that keep trickling bytes of a head that never ends.
            assert _count_closed_by_server(held, within=30) == HELD
        finally:
            for sock in held:
                sock.close()
        assert server.request("/livez")[0] == 200
        assert server.proc.poll() is None


def test_beyond_max_connections_the_longest_idle_is_evicted_for_a_fresh_probe() -> None:
    raise_nofile(3 * 700)
    with serve() as server:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(700)]
        try:
            paths = ("/livez", "/readyz") * 5
            answers = [server.request(path, timeout=PROBE_TIMEOUT) for path in paths]
            assert [status for status, _, _ in answers] == [200] * 10
            assert server.fds() < 600  # 512 connections at most, plus the process's own
            assert _closed_by_server(held[0], 5)  # the oldest idle one went first
        finally:
            for sock in held:
                sock.close()


def test_a_client_that_never_reads_its_answers_is_cut_off_without_growing_memory() -> None:
    """Pipelined ``/metrics`` requests from a client that never reads: the server stops
    reading it once its answers back up, keeps probes answered, and drops it after its
    write timeout (5 s) instead of buffering answers for ever."""
    with serve() as server:
        baseline_fds = server.fds()
        rss_before = _rss_kb(server)
        hog = socket.socket()
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.connect(("127.0.0.1", server.port))
        hog.settimeout(0.5)
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        with contextlib.suppress(TimeoutError):
            hog.sendall(request * 5000)  # stops once the server no longer reads it
        try:
            assert server.request("/livez", timeout=5)[0] == 200
            assert _rss_kb(server) - rss_before < 8 * 1024  # answers were not all buffered
            _wait_until(lambda: server.fds() <= baseline_fds, 12)  # cut off by the server
            assert server.request("/readyz", timeout=5)[0] == 200
        finally:
            hog.close()


def _rss_kb(server: ServeProcess) -> int:
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
