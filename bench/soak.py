"""Ten minutes at a short interval under mixed traffic: memory, threads and fds stay flat.

    python bench/soak.py [--duration 600] [--interval 0.5] [--rate 200]

``selfcheck serve`` runs every check every ``--interval`` seconds (1,200 cycles in ten
minutes at 0.5 s: 13,200 check threads started, 1,200 forked DogStatsD senders) with every
socket answering, while this process sends about ``--rate`` requests per second of mixed
traffic: probes on new and on kept-alive connections, ``/metrics`` in both formats,
``/status``, ``/readyz?verbose``, per-check paths, 404s, HEAD, and malformed requests that
must get a 4xx. Every 5 s the server is sampled from ``/proc``. The table shows one row per
minute; the verdict compares the end with minute 1 (after imports and first allocations).
"""

from __future__ import annotations

import argparse
import http.client
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    PYTHON_HELP,
    ProcSample,
    answering_node,
    answers,
    free_port,
    print_header,
    sample,
    start_selfcheck,
    table,
    wait_until,
    workdir,
)
from tests.support.run import stop

SAMPLE_EVERY = 5.0
GROWTH_LIMIT_MB = 2.0
PATHS = (
    "/livez",
    "/readyz",
    "/readyz?verbose",
    "/readyz?exclude=security",
    "/readyz/procfs",
    "/startupz",
    "/metrics",
    "/status",
    "/nope",
)
MALFORMED = (
    b"POST /livez HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /livez HTTP/1.1\r\nContent-Length: 9\r\n\r\nhalf",
    b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 9000 + b"\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
    b"GET /livez HTTP/9\r\n\r\n",
)


class Traffic:
    """Round-robin requests: a kept-alive client, fresh connections, and malformed ones."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = 0
        self.unexpected = 0
        self.kept: http.client.HTTPConnection | None = None

    def one(self) -> None:
        kind = self.sent % 4
        self.sent += 1
        try:
            if kind == 3:
                self._malformed(MALFORMED[self.sent % len(MALFORMED)])
            else:
                self._valid(PATHS[self.sent % len(PATHS)], fresh=kind == 2)
        except (OSError, http.client.HTTPException):
            self.unexpected += 1
            self.kept = None

    def _valid(self, path: str, fresh: bool) -> None:
        headers = {"Accept": "application/openmetrics-text"} if self.sent % 7 == 0 else {}
        if fresh or self.kept is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        else:
            conn = self.kept
        method = "HEAD" if self.sent % 11 == 0 else "GET"
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status >= 500 and path not in ("/readyz", "/readyz?verbose"):
            self.unexpected += 1
        if fresh:
            conn.close()
        else:
            self.kept = conn

    def _malformed(self, data: bytes) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(data)
            reply = sock.recv(64)
            if reply and not reply.startswith(b"HTTP/1.1 4"):
                self.unexpected += 1


def run(duration: float, rate: float, port: int, pid: int) -> tuple[list[ProcSample], Traffic]:
    traffic = Traffic(port)
    samples = [sample(pid)]
    began = time.monotonic()
    gap = 1.0 / rate
    next_request = next_sample = began
    while (now := time.monotonic()) - began < duration:
        if now >= next_sample:
            samples.append(sample(pid))
            next_sample += SAMPLE_EVERY
        traffic.one()
        next_request += gap
        time.sleep(max(0.0, next_request - time.monotonic()))
    samples.append(sample(pid))
    return samples, traffic


def report(samples: list[ProcSample], traffic: Traffic, duration: float) -> None:
    """Per minute: memory at its end and peak, and the floor and peak of threads and fds.

    A sample taken while a cycle runs sees its check threads and their sockets, so peaks
    move; a leak raises the floor. Flat means: RSS grew less than ``GROWTH_LIMIT_MB`` from
    minute 1 to the end, and the last minute's floors of threads and fds are minute 1's.
    """
    start = samples[0].at
    minutes: list[list[ProcSample]] = []
    rows: list[list[object]] = []
    for minute in range(int(duration // 60) + 1):
        at = [s for s in samples if minute * 60 <= s.at - start < (minute + 1) * 60]
        if not at:
            continue
        minutes.append(at)
        rows.append([
            minute, f"{at[-1].rss_mb:.1f}", f"{max(s.rss_mb for s in at):.1f}",
            f"{min(s.threads for s in at)}-{max(s.threads for s in at)}",
            f"{min(s.fds for s in at)}-{max(s.fds for s in at)}",
        ])  # fmt: skip
    print(table(["minute", "RSS end MB", "RSS max MB", "threads (min-max)", "fds (min-max)"], rows))
    first, last = minutes[min(1, len(minutes) - 1)], minutes[-1]
    growth = last[-1].rss_mb - first[0].rss_mb
    threads = min(s.threads for s in last) - min(s.threads for s in first)
    fds = min(s.fds for s in last) - min(s.fds for s in first)
    flat = growth < GROWTH_LIMIT_MB and threads <= 0 and fds <= 0
    print(
        f"\n{traffic.sent} requests, {traffic.unexpected} unexpected answers or errors; "
        f"from minute 1 to the end: RSS {growth:+.2f} MB (limit {GROWTH_LIMIT_MB:g} MB), "
        f"thread floor {threads:+d}, fd floor {fds:+d}: {'FLAT' if flat else 'NOT FLAT'}; "
        f"peaks: {max(s.threads for s in samples)} threads, {max(s.fds for s in samples)} fds"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--interval", default="0.5", help="SELFCHECK_INTERVAL (default 0.5)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--no-runtime", action="store_true", help="no containerd")
    parser.add_argument("--python", default=sys.executable, help=PYTHON_HELP)
    args = parser.parse_args()
    print_header("Soak", "python bench/soak.py " + " ".join(sys.argv[1:]))
    with workdir("soak") as directory, answering_node(directory, not args.no_runtime) as env:
        port = free_port()
        extra = {"SELFCHECK_INTERVAL": args.interval}
        log = directory / "selfcheck.log"
        server = start_selfcheck(env, port, log, extra, python=args.python)
        try:
            wait_until(answers(port, "/readyz"), 15)
            samples, traffic = run(args.duration, args.rate, port, server.pid)
        finally:
            stop(server)
    report(samples, traffic, args.duration)


if __name__ == "__main__":
    main()
