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
Each endpoint gets 2 s of warm-up, then ``wrk -t2 -c64 --latency`` (Debian package
``wrk``; its percentiles are of the latencies it measured, without coordinated-omission
correction). ``wrk`` shares the machine's cores with the server it loads, as in the
floors of docs/performance.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
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
    stop,
    table,
    wait_until,
    workdir,
)

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


def wrk(url: str, seconds: float, connections: int, threads: int) -> WrkResult:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "5s",
        "--latency",
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
        ports = {"selfcheck": free_port(), "node-exporter": free_port(), "floor": free_port()}
        selfcheck = start_selfcheck(
            env, ports["selfcheck"], directory / "selfcheck.log", python=args.python
        )
        exporter = start_node_exporter(
            ports["node-exporter"], directory / "node-exporter.log", NODE_EXPORTER_FLAGS
        )
        floor = subprocess.Popen(
            [args.python, str(Path(__file__).with_name("_floor.py")), str(ports["floor"])]
        )
        pids = {"selfcheck": selfcheck.pid, "node-exporter": exporter.pid, "floor": floor.pid}
        try:
            wait_until(answers(ports["selfcheck"], "/readyz"), 15)
            wait_until(answers(ports["node-exporter"], "/metrics"), 15)
            wait_until(answers(ports["floor"], "/"), 15)
            rows, results = run_all(args, ports, pids)
        finally:
            for proc in (selfcheck, exporter, floor):
                stop(proc)
    print(table(
        ["server", "path", "body bytes", "p50 ms", "p99 ms", "max ms", "requests/s",
         "non-2xx + errors", "RSS after MB", "target p99", "met"],
        rows,
    ))  # fmt: skip
    print_ratios(results)


def run_all(
    args: argparse.Namespace, ports: dict[str, int], pids: dict[str, int]
) -> tuple[list[list[object]], dict[tuple[str, str], WrkResult]]:
    plan = [
        ("floor", "/"),
        ("selfcheck", "/livez"),
        ("selfcheck", "/readyz"),
        ("selfcheck", "/metrics"),
        ("node-exporter", "/metrics"),
    ]
    rows: list[list[object]] = []
    results: dict[tuple[str, str], WrkResult] = {}
    for name, path in plan:
        port, pid = ports[name], pids[name]
        url = f"http://127.0.0.1:{port}{path}"
        body = len(http_get(port, path, timeout=5)[1])
        wrk(url, 2, args.connections, args.threads)
        result = wrk(url, args.duration, args.connections, args.threads)
        results[(name, path)] = result
        target = TARGETS_MS.get(path) if name == "selfcheck" else None
        met = "" if target is None else ("yes" if result.p99_ms < target else "NO")
        rows.append([
            name, path, body, f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}",
            f"{result.max_ms:.1f}", f"{result.rps:,.0f}", result.bad,
            f"{sample(pid).rss_mb:.1f}", f"< {target:g} ms" if target else "", met,
        ])  # fmt: skip
    return rows, results


def print_ratios(results: dict[tuple[str, str], WrkResult]) -> None:
    base = results[("node-exporter", "/metrics")]
    rows = []
    for path in ("/livez", "/readyz", "/metrics"):
        ours = results[("selfcheck", path)]
        rows.append([
            f"selfcheck {path} vs node-exporter /metrics",
            f"{base.p50_ms / ours.p50_ms:.1f}x lower" if ours.p50_ms else "",
            f"{base.p99_ms / ours.p99_ms:.1f}x lower" if ours.p99_ms else "",
            f"{ours.rps / base.rps:.1f}x higher" if base.rps else "",
        ])  # fmt: skip
    print("\nRatios (node-exporter's figure divided by selfcheck's, same run):\n")
    print(table(["comparison", "p50 latency", "p99 latency", "throughput"], rows))


if __name__ == "__main__":
    main()
