"""Probe and scrape latency under load, side by side with prometheus-node-exporter.

    python bench/http_load.py [--duration 30] [--connections 64] [--no-runtime]

docs/performance.md: ``/readyz`` and ``/livez`` p99 under 5 ms and ``/metrics`` p99 under
10 ms with 64 concurrent loopback clients, measured in the same run as
``prometheus-node-exporter`` (Debian package) serving its own ``/metrics``.

``selfcheck serve`` runs as a separate process at the default interval (30 s) with every
check's socket answering (see ``bench/_common.answering_node``), so each run of
``--duration`` 30 s includes a check cycle; node-exporter runs with its Debian defaults.
node-exporter's in-flight limit (40, beyond which it answers 503) is lifted with
``--web.max-requests=0`` so that every request it counts was served. ``floor`` is a minimal
asyncio server answering ``ok`` to every request head (``bench/_floor.py``): what the
machine allows at that moment, with no request handling at all.
With TLS: a second ``selfcheck serve`` and a second node-exporter read one exporter-toolkit
web configuration (``bench/_tls.py``: an ``openssl`` certificate, one bcrypt user at cost 10),
and the same paths are loaded over HTTPS, ``/metrics`` with the user's basic auth. The
kubelet opens a new connection (over TLS, a new handshake) for every probe: ``close`` rows
are 64 clients doing that, ``probe`` rows one client doing it request after request, plain,
over TLS, and over TLS while ``bench/_idle_tls.py`` holds 500 idle TLS connections (each
closed by the server's idle deadline and opened again, so a steady stream of handshakes).
Each endpoint gets 2 s of warm-up, then ``wrk -t2 -c64 --latency`` (Debian package
``wrk``; its percentiles are of the latencies it measured, without coordinated-omission
correction). ``wrk`` shares the machine's cores with the server it loads, as in the
floors of docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    PYTHON_HELP,
    answering_node,
    answers,
    free_port,
    http_get,
    print_header,
    sample,
    start_node_exporter,
    start_selfcheck,
    table,
    wait_until,
    workdir,
)
from bench._tls import authorization, https_get, web_config
from tests.support.run import stop

# node-exporter answers 503 beyond 40 requests in flight by default; the limit is lifted
# so that it serves the same 64 clients and its latencies are of real answers.
NODE_EXPORTER_FLAGS = ("--web.max-requests=0",)
TARGETS_MS = {"/livez": 5.0, "/readyz": 5.0, "/metrics": 10.0}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass(frozen=True, slots=True)
class WrkResult:
    p50_ms: float
    p99_ms: float
    max_ms: float
    rps: float
    requests: int
    bad: int

    @property
    def ok(self) -> bool:
        return self.requests > 0


def _millis(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip())
    if match is None:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    def find(pattern: str, default: str = "0") -> str:
        match = re.search(pattern, output, re.MULTILINE)
        return match.group(1) if match else default

    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return WrkResult(
        p50_ms=_millis(find(r"^\s+50%\s+(\S+)", "nan")),
        p99_ms=_millis(find(r"^\s+99%\s+(\S+)", "nan")),
        max_ms=_millis(find(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", "nan")),
        rps=float(find(r"^Requests/sec:\s+([\d.]+)")),
        requests=int(find(r"^\s+(\d+) requests in")),
        bad=int(find(r"Non-2xx or 3xx responses: (\d+)")) + errors,
    )


def wrk(
    url: str, seconds: float, connections: int, threads: int, headers: tuple[str, ...] = ()
) -> WrkResult:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "5s",
        "--latency",
        *(arg for header in headers for arg in ("-H", header)),
        url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    return parse_wrk(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-runtime", action="store_true", help="no containerd")
    parser.add_argument("--python", default=sys.executable, help=PYTHON_HELP)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk)")
    print_header("HTTP latency under load", "python bench/http_load.py " + " ".join(sys.argv[1:]))
    with workdir("http") as directory, answering_node(directory, not args.no_runtime) as env:
        names = ("selfcheck", "node-exporter", "floor", "selfcheck-tls", "node-exporter-tls")
        ports = {name: free_port() for name in names}
        web = web_config(directory)
        procs = {
            "selfcheck": start_selfcheck(
                env, ports["selfcheck"], directory / "selfcheck.log", python=args.python
            ),
            "selfcheck-tls": start_selfcheck(
                env,
                ports["selfcheck-tls"],
                directory / "selfcheck-tls.log",
                {"SELFCHECK_WEB_CONFIG": str(web)},
                python=args.python,
            ),
            "node-exporter": start_node_exporter(
                ports["node-exporter"], directory / "node-exporter.log", NODE_EXPORTER_FLAGS
            ),
            "node-exporter-tls": start_node_exporter(
                ports["node-exporter-tls"],
                directory / "node-exporter-tls.log",
                (*NODE_EXPORTER_FLAGS, f"--web.config.file={web}"),
            ),
            "floor": subprocess.Popen(
                [args.python, str(Path(__file__).with_name("_floor.py")), str(ports["floor"])]
            ),
        }
        pids = {name: proc.pid for name, proc in procs.items()}
        try:
            wait_until(answers(ports["selfcheck"], "/readyz"), 15)
            wait_until(answers(ports["node-exporter"], "/metrics"), 15)
            wait_until(answers(ports["floor"], "/"), 15)
            wait_until(lambda: https_get(ports["selfcheck-tls"], "/startupz")[0] == 200, 15)
            wait_until(lambda: https_get(ports["node-exporter-tls"], "/metrics")[0] == 200, 15)
            rows, results = run_all(args, ports, pids)
        finally:
            for proc in procs.values():
                stop(proc)
    print(table(
        ["server", "path", "clients", "body bytes", "p50 ms", "p99 ms", "max ms", "requests/s",
         "non-2xx + errors", "RSS after MB", "target p99", "met"],
        rows,
    ))  # fmt: skip
    print_ratios(results)
    print_probes(results)


PLAN = (
    ("floor", "/", "keep-alive"),
    ("selfcheck", "/livez", "keep-alive"),
    ("selfcheck", "/readyz", "keep-alive"),
    ("selfcheck", "/metrics", "keep-alive"),
    ("node-exporter", "/metrics", "keep-alive"),
    ("selfcheck-tls", "/livez", "keep-alive"),
    ("selfcheck-tls", "/readyz", "keep-alive"),
    ("selfcheck-tls", "/metrics", "keep-alive"),
    ("node-exporter-tls", "/metrics", "keep-alive"),
    ("selfcheck", "/livez", "close"),
    ("selfcheck-tls", "/livez", "close"),
    ("selfcheck", "/livez", "probe"),
    ("selfcheck-tls", "/livez", "probe"),
    ("selfcheck-tls", "/livez", "probe, 500 idle TLS"),
)
"""(server, path, clients): 64 keep-alive connections; 64 clients opening a new connection per
request; or one client doing so, request after request, as a kubelet probes (``probe``), also
while 500 idle TLS connections are held open (500 + 1 stays under the server's 512)."""
IDLE_TLS = 500


def run_all(
    args: argparse.Namespace, ports: dict[str, int], pids: dict[str, int]
) -> tuple[list[list[object]], dict[tuple[str, str, str], WrkResult]]:
    rows: list[list[object]] = []
    results: dict[tuple[str, str, str], WrkResult] = {}
    for name, path, clients in PLAN:
        port, pid = ports[name], pids[name]
        tls = name.endswith("-tls")
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"
        headers: tuple[str, ...] = (f"Authorization: {authorization()}",) if tls else ()
        if clients != "keep-alive":
            headers += ("Connection: close",)
        connections, threads = (
            (1, 1) if clients.startswith("probe") else (args.connections, args.threads)
        )
        body = len((https_get if tls else http_get)(port, path, timeout=5)[1])
        with _idle_clients(args.python, port, IDLE_TLS if "idle" in clients else 0):
            wrk(url, 2, connections, threads, headers)
            result = wrk(url, args.duration, connections, threads, headers)
        results[(name, path, clients)] = result
        target = TARGETS_MS.get(path) if name.startswith("selfcheck") else None
        met = "" if target is None else ("yes" if result.p99_ms < target else "NO")
        rows.append([
            name, path, clients, body, f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}",
            f"{result.max_ms:.1f}", f"{result.rps:,.0f}", result.bad,
            f"{sample(pid).rss_mb:.1f}", f"< {target:g} ms" if target else "", met,
        ])  # fmt: skip
    return rows, results


@contextlib.contextmanager
def _idle_clients(python: str, port: int, count: int) -> Iterator[None]:
    """``count`` idle TLS connections held open for the duration (none when 0)."""
    if not count:
        yield
        return
    holder = subprocess.Popen(
        [python, str(Path(__file__).with_name("_idle_tls.py")), str(port), str(count)],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        holder.stdout.readline()  # "ready": every connection is up and handshaken
        yield
    finally:
        stop(holder)


def print_ratios(results: dict[tuple[str, str, str], WrkResult]) -> None:
    rows = []
    for ours, theirs in (
        (("selfcheck", "/livez"), ("node-exporter", "/metrics")),
        (("selfcheck", "/readyz"), ("node-exporter", "/metrics")),
        (("selfcheck", "/metrics"), ("node-exporter", "/metrics")),
        (("selfcheck-tls", "/metrics"), ("node-exporter-tls", "/metrics")),
        (("selfcheck-tls", "/livez"), ("selfcheck", "/livez")),
        (("selfcheck-tls", "/metrics"), ("selfcheck", "/metrics")),
    ):
        a, b = results[(*ours, "keep-alive")], results[(*theirs, "keep-alive")]
        rows.append([
            f"{' '.join(ours)} vs {' '.join(theirs)}",
            f"{b.p50_ms / a.p50_ms:.2f}x" if a.p50_ms else "",
            f"{b.p99_ms / a.p99_ms:.2f}x" if a.p99_ms else "",
            f"{a.rps / b.rps:.2f}x" if b.rps else "",
        ])  # fmt: skip
    print("\nRatios (the second's latency divided by the first's, the first's throughput")
    print("divided by the second's: above 1 means the first is faster; same run):\n")
    print(table(["comparison", "p50 latency", "p99 latency", "throughput"], rows))


def print_probes(results: dict[tuple[str, str, str], WrkResult]) -> None:
    """wrk times a request from its first byte, so a new connection's connect and handshake
    are outside its latencies; with one client, 1000 / requests/s is the whole probe."""
    rows = [
        [f"{name} {path} ({clients})", f"{1000 / r.rps:.2f}" if r.rps else ""]
        for (name, path, clients), r in results.items()
        if clients.startswith("probe")
    ]
    print("\nWhole probe, connect and TLS handshake included (one client: 1000 / requests/s):\n")
    print(table(["probe", "ms per probe"], rows))


if __name__ == "__main__":
    main()
