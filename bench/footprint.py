"""Resident memory, CPU share and start-up time of ``selfcheck serve``, beside node-exporter.

    python bench/footprint.py [--duration 600] [--starts 5] [--no-runtime] [--arenas]
    python bench/footprint.py --modules [--tree DIR ...] [--no-runtime]
    python bench/footprint.py --floor [--repeat 5] [--duration 30]
    python bench/footprint.py --agent-uid 100 [--duration 300] [--tls]

docs/performance.md: selfcheck's own share of resident memory above the libraries' floor
(``--floor``), measured in the same run, at most 3 MB with TLS and basic auth after 30 s; under
0.15 % of one core at the default interval (30 s), ready within 1 s of start; side by side with
``prometheus-node-exporter``.

Start-up: ``--starts`` cold starts of each, timed from ``Popen`` to the first 200 from
``/readyz`` (selfcheck: the first check cycle has finished and every required check
passed) and from ``/metrics`` (node-exporter). Then both run together for ``--duration``
seconds at their defaults, under the traffic a node really sends them: a kubelet probing
``/livez`` and ``/readyz`` every 10 s, and Prometheus scraping each ``/metrics`` every
15 s. Every second both are sampled from ``/proc``: ``VmRSS``, threads, open fds, and CPU
ticks including reaped children (the ``origin_detection`` check forks a sender per cycle).
Every check's socket answers (see ``bench/_common.answering_node``). A third process,
``selfcheck serve (TLS)``, runs beside them behind an exporter-toolkit web configuration
(``bench/_tls.py``: TLS and one bcrypt user) and gets the same traffic over HTTPS, each probe
and scrape on a new connection (a new handshake) as the kubelet and Prometheus make them,
the scrapes with basic auth. ``--arenas`` adds a fourth, the plain server again with
``MALLOC_ARENA_MAX`` set to glibc's own default (eight per core), which leaves its threads the
arenas ``selfcheck.host.malloc`` otherwise takes away: the two side by side in one run.

``--modules``: resident memory of a fresh interpreter after importing the sidecar's modules
(the service, the HTTP server, the metrics library and every check module) and after one
full ``selfcheck check`` cycle with every feature on (every socket answering, logs, origin
detection, a real containerd), for each source ``--tree`` (default: this one), with the
third-party packages each has loaded by then; ``--repeat`` runs, medians.

``--floor``: what the libraries ``selfcheck serve`` holds with every feature on cost before
any of its own code, step by step in a fresh interpreter (``--repeat`` runs, medians): an
asyncio server on loopback, the standard-library modules ``prometheus_client`` imports for
the servers and push clients selfcheck does not use, ``prometheus_client`` itself, ``h2`` (the
CRI call), ``argparse``, ``bcrypt`` (the web configuration's users), a TLS server context
holding a certificate, and that bare server having answered ``FLOOR_REQUESTS`` HTTPS requests
on new connections (OpenSSL and asyncio's SSL protocol load state on first use, whoever
serves): the libraries' floor. Then selfcheck's own modules; then a real
``selfcheck serve`` with TLS and basic auth after ``--duration`` seconds of cycles, probes and
scrapes: the last rows are selfcheck's share above the floor. A second table, from the same
interpreters after the ladder, gives what the libraries ``serve`` no longer holds would add
(``psutil``, PyYAML). Both verdicts are printed: the share above the floor the server holds,
and above the floor the 3 MB target was first written against (the 29.0 MB ladder of
2026-12-04, which still held those two), re-measured in this run.

``--agent-uid UID``: the long-lived helper's cost beside an Agent of another uid, against a
root Agent's pod in the same window (``bench/_helper_cost.py``); ``--tls`` serves both over
TLS with basic auth, every probe and scrape a new HTTPS connection.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    PYTHON_HELP,
    ProcSample,
    answering_node,
    answers,
    cpu_share,
    free_port,
    http_get,
    median,
    print_header,
    sample,
    start_node_exporter,
    start_selfcheck,
    table,
    wait_until,
    workdir,
)
from bench._tls import https_get, web_config
from tests.support.run import stop

PROBE_EVERY, SCRAPE_EVERY, SAMPLE_EVERY = 10.0, 15.0, 1.0
MARKS_MIN = (1, 5, 10, 15, 20, 30, 45, 60, 90, 120)  # the minutes ``over_time`` reports
GLIBC_ARENAS = {"MALLOC_ARENA_MAX": str(8 * (os.cpu_count() or 1))}
"""glibc's own limit on 64-bit (malloc/arena.c ``NARENAS_FROM_NCORES``), set so that
``selfcheck.host.malloc`` leaves it: the server as it was before that limit."""
ARENAS_ROW = f"selfcheck serve, MALLOC_ARENA_MAX={GLIBC_ARENAS['MALLOC_ARENA_MAX']}"

_MODULES_CHILD = """
import contextlib, io, json, sys
def rss():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmRSS")) / 1024
import selfcheck.cli, selfcheck.service, selfcheck.registry
selfcheck.registry.all_checks()
imported = rss()
with contextlib.redirect_stdout(io.StringIO()):
    code = selfcheck.cli.main(["check", "--json"])
packages = {"requests", "urllib3", "h2", "psutil", "prometheus_client", "ssl", "email"}
loaded = sorted(p for p in packages if p in sys.modules)
print(json.dumps({"imported": imported, "cycle": rss(), "code": code, "loaded": loaded}))
"""

_FLOOR_CHILD = """
import importlib, json, sys
def rss():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmRSS")) / 1024
rows = [["the interpreter", rss()]]
def step(label, *modules, into=rows):
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:  # a library serve no longer needs may be absent from the venv
            label += " (not installed)"
    into.append([label, rss()])
import asyncio
loop = asyncio.new_event_loop()
server = loop.run_until_complete(loop.create_server(asyncio.Protocol, "127.0.0.1", 0))
rows.append(["an asyncio server on loopback (asyncio, ssl, socket, logging)", rss()])
step("what prometheus_client imports from the standard library for its own servers and "
     "push clients (http.server, wsgiref, urllib.request, email, gzip, platform)",
     "http.server", "wsgiref.simple_server", "urllib.request", "gzip", "bz2", "lzma",
     "platform", "timeit", "socketserver")
step("prometheus_client", "prometheus_client")
step("h2 (the CRI call over HTTP/2)", "h2.connection")
step("argparse", "argparse")
step("bcrypt (basic_auth_users)", "bcrypt")
import ssl
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
rows.append(["a TLS server context with its certificate and key", rss()])
class Ok(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        if b"\\r\\n\\r\\n" in data:
            self.transport.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n")
            self.transport.close()
tls = loop.run_until_complete(loop.create_server(Ok, "127.0.0.1", 0, ssl=context))
print(json.dumps({"port": tls.sockets[0].getsockname()[1]}), flush=True)
served = loop.create_future()
loop.add_reader(0, lambda: served.done() or served.set_result(sys.stdin.readline()))
loop.run_until_complete(served)
loop.remove_reader(0)
rows.append([f"that server after answering {served.result().strip()} HTTPS requests, one "
             "connection each (OpenSSL's and asyncio's state loaded on first use): the "
             "libraries' floor", rss()])
step("the standard library's modules selfcheck's code imports beyond those (ctypes for "
     "openat2, pathlib, queue, shlex)", "ctypes", "pathlib", "queue", "shlex")
step("selfcheck's own modules (every check, the server, the web configuration)",
     "selfcheck.cli", "selfcheck.service", "selfcheck.registry", "selfcheck.http.server",
     "selfcheck.http.webconfig", "selfcheck.http.auth")
importlib.import_module("selfcheck.registry").all_checks()
rows[-1][1] = rss()
gone = [["after selfcheck's own modules", rss()]]
step("psutil (process discovery, now read from procfs directly)", "psutil", into=gone)
step("PyYAML (the web configuration, now read in a short-lived child)", "yaml", into=gone)
print(json.dumps({"ladder": rows, "gone": gone}))
"""


FLOOR_REQUESTS = 20
"""HTTPS requests the floor's bare TLS server answers, each on a new connection: what
``serve_after``'s probes make ``selfcheck serve`` do, without selfcheck's code."""


def floor_steps(python: str, tree: Path, directory: Path) -> dict[str, list[list[object]]]:
    """One fresh interpreter: ``[label, RSS MB]`` after each step of ``_FLOOR_CHILD``, the
    ladder and then the libraries ``serve`` no longer holds. Its bare TLS server is sent
    ``FLOOR_REQUESTS`` HTTPS requests from this process, as a kubelet would."""
    child = subprocess.Popen(
        [python, "-c", _FLOOR_CHILD, str(directory / "tls.crt"), str(directory / "tls.key")],
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        cwd="/",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        port = int(json.loads(child.stdout.readline())["port"])
        for _ in range(FLOOR_REQUESTS):
            https_get(port, "/livez")
        out, _ = child.communicate(f"{FLOOR_REQUESTS}\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise SystemExit(f"the floor's interpreter failed (exit {child.returncode})")
    steps: dict[str, list[list[object]]] = json.loads(out.splitlines()[-1])
    return steps


def serve_after(python: str, env: dict[str, str], directory: Path, seconds: float) -> float:
    """RSS (MB) of ``selfcheck serve`` with TLS and basic auth after ``seconds`` of cycles,
    kubelet probes and Prometheus scrapes over HTTPS."""
    web = {"SELFCHECK_WEB_CONFIG": str(directory / "web.yml")}
    port = free_port()
    proc = start_selfcheck(env, port, directory / "selfcheck.log", web, python=python)
    try:
        wait_until(answers_tls(port, "/readyz"), 15)
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            https_get(port, "/livez")
            https_get(port, "/readyz")
            https_get(port, "/metrics")
            time.sleep(min(PROBE_EVERY, seconds / 3))
        return sample(proc.pid).rss_mb
    finally:
        stop(proc)


def _medians(runs: list[list[list[object]]]) -> list[tuple[str, float]]:
    """``(label, median RSS MB)`` of each step, over runs of the same steps."""
    return [
        (str(label), median([float(str(run[index][1])) for run in runs]))
        for index, (label, _) in enumerate(runs[0])
    ]


def _ladder(steps: list[tuple[str, float]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for index, (label, total) in enumerate(steps):
        added = f"{total - steps[index - 1][1]:+.1f}" if index else ""
        rows.append([label, added, f"{total:.1f}"])
    return rows


def floor_table(
    python: str, env: dict[str, str], directory: Path, repeat: int, seconds: float
) -> str:
    """The ladder of ``--floor``, medians over ``repeat`` fresh interpreters, then selfcheck's
    share above the floor, and what the libraries ``serve`` no longer holds would add."""
    web_config(directory)
    tree = Path(__file__).resolve().parents[1]
    runs = [floor_steps(python, tree, directory) for _ in range(repeat)]
    steps = _medians([run["ladder"] for run in runs])
    served = median([serve_after(python, env, directory, seconds) for _ in range(repeat)])
    steps.append((f"selfcheck serve with TLS and basic auth, after {seconds:g} s", served))
    floor, standard = steps[-4][1], steps[-3][1] - steps[-4][1]
    modules = steps[-2][1] - steps[-3][1]
    gone = _medians([run["gone"] for run in runs])
    dropped = gone[-1][1] - gone[0][1]
    share = served - floor
    first_floor = floor + dropped
    return "\n".join(
        [
            table(["step", "adds MB", "RSS MB"], _ladder(steps)),
            "",
            table(["what selfcheck serve no longer holds", "adds MB", "RSS MB"], _ladder(gone)),
            "",
            f"selfcheck serve with TLS and basic auth after {seconds:g} s: {served:.1f} MB",
            f"- above the libraries' floor it holds ({floor:.1f} MB): {share:.1f} MB (the "
            f"standard library's modules it imports {standard:+.1f}, its own modules "
            f"{modules:+.1f}, serving {served - steps[-2][1]:+.1f}); target at most 3 MB: "
            f"{_verdict(share)}",
            f"- above the floor the target was first written against, with psutil and PyYAML "
            f"({floor:.1f} + {dropped:.1f} = {first_floor:.1f} MB in this run): "
            f"{served - first_floor:.1f} MB; at most 3 MB: {_verdict(served - first_floor)}",
        ]
    )


def _verdict(share: float) -> str:
    return "met" if share <= 3.0 else "MISSED"


def module_footprint(python: str, tree: Path, env: dict[str, str]) -> dict[str, object]:
    """One fresh interpreter on ``tree``: RSS after the imports and after one cycle."""
    child_env = {**env, "PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [python, "-c", _MODULES_CHILD],
        env=child_env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def modules_table(python: str, trees: list[Path], env: dict[str, str], repeat: int) -> str:
    rows: list[list[object]] = []
    for tree in trees:
        runs = [module_footprint(python, tree, env) for _ in range(repeat)]
        imported = median([float(str(r["imported"])) for r in runs])
        cycle = median([float(str(r["cycle"])) for r in runs])
        loaded = ", ".join(str(p) for p in runs[-1]["loaded"])  # type: ignore[attr-defined]
        rows.append([str(tree), f"{imported:.1f}", f"{cycle:.1f}", runs[-1]["code"], loaded])
    headers = ["source tree", "RSS after imports MB", "RSS after one cycle MB", "exit", "loaded"]
    return table(headers, rows)


def answers_tls(port: int, path: str) -> Callable[[], bool]:
    return lambda: https_get(port, path, 0.5)[0] == 200


def time_to_ready(
    start: Callable[[int], subprocess.Popen[bytes]], path: str, starts: int, tls: bool = False
) -> tuple[list[float], list[float]]:
    """Seconds from spawn to the first 200 on ``path``, and RSS (MB) at that moment."""
    seconds, rss = [], []
    for _ in range(starts):
        port = free_port()
        began = time.monotonic()
        proc = start(port)
        try:
            wait_until(answers_tls(port, path) if tls else answers(port, path), 15, step=0.002)
            seconds.append(time.monotonic() - began)
            rss.append(sample(proc.pid).rss_mb)
        finally:
            stop(proc)
    return seconds, rss


def drive(
    duration: float, sc_ports: list[int], ne_port: int, tls_port: int, pids: dict[str, int]
) -> dict[str, list[ProcSample]]:
    """Probe, scrape and sample until ``duration`` has passed; ``sc_ports`` are plain HTTP."""
    samples: dict[str, list[ProcSample]] = {name: [] for name in pids}
    began = time.monotonic()
    next_probe = next_scrape = next_sample = began
    while (now := time.monotonic()) - began < duration:
        if now >= next_probe:
            for port in sc_ports:
                http_get(port, "/livez")
                http_get(port, "/readyz")
            https_get(tls_port, "/livez")
            https_get(tls_port, "/readyz")
            next_probe += PROBE_EVERY
        if now >= next_scrape:
            for port in sc_ports:
                http_get(port, "/metrics")
            https_get(tls_port, "/metrics")
            http_get(ne_port, "/metrics", timeout=5)
            next_scrape += SCRAPE_EVERY
        if now >= next_sample:
            for name, pid in pids.items():
                samples[name].append(sample(pid))
            next_sample += SAMPLE_EVERY
        time.sleep(max(0.0, min(next_probe, next_scrape, next_sample) - time.monotonic()))
    return samples


def summary(
    name: str, samples: list[ProcSample], ready: list[float], ready_rss: list[float]
) -> list[object]:
    rss = [s.rss_mb for s in samples]
    minute = [s.rss_mb for s in samples if s.at - samples[0].at >= 60] or rss
    return [
        name,
        f"{median(ready) * 1000:.0f} ({min(ready) * 1000:.0f}-{max(ready) * 1000:.0f})",
        f"{median(ready_rss):.1f}",
        f"{minute[0]:.1f}",
        f"{sum(rss) / len(rss):.1f}",
        f"{max(rss):.1f}",
        f"{rss[-1]:.1f}",
        f"{cpu_share(samples[0], samples[-1]):.3f}",
        max(s.threads for s in samples),
        max(s.fds for s in samples),
    ]


def over_time(samples: dict[str, list[ProcSample]], names: list[str], duration: float) -> str:
    """Each process's resident set at fixed minutes of the run: whether it levels off."""
    marks = [m for m in MARKS_MIN if m * 60 <= duration + SAMPLE_EVERY]
    rows: list[list[object]] = []
    for name in names:
        series = samples[name]
        start = series[0].at
        row: list[object] = [name]
        for mark in marks:
            at = next((s for s in series if s.at - start >= mark * 60), series[-1])
            row.append(f"{at.rss_mb:.1f}")
        rows.append(row)
    return table(["RSS MB at minute", *(str(m) for m in marks)], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, help="seconds (default 600; with --floor, 30)")
    parser.add_argument("--starts", type=int, default=5, help="cold starts to time")
    parser.add_argument("--no-runtime", action="store_true", help="no containerd")
    parser.add_argument("--python", default=sys.executable, help=PYTHON_HELP)
    parser.add_argument("--modules", action="store_true", help="imports and one cycle only")
    parser.add_argument("--tree", type=Path, action="append", help="source tree (--modules)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per tree (--modules, --floor)")
    parser.add_argument("--floor", action="store_true", help="what each library costs, in order")
    parser.add_argument("--agent-uid", type=int, help="the helper beside an Agent of this uid")
    parser.add_argument("--tls", action="store_true", help="with --agent-uid: TLS and basic auth")
    parser.add_argument("--arenas", action="store_true", help="and a server with glibc's arenas")
    args = parser.parse_args()
    print_header("Footprint", "python bench/footprint.py " + " ".join(sys.argv[1:]))
    if args.agent_uid is not None:
        from bench._helper_cost import agent_uid_table

        seconds = 300.0 if args.duration is None else args.duration
        print(agent_uid_table(seconds, args.agent_uid, args.tls))
        return
    if args.floor:
        with workdir("floor") as directory, answering_node(directory, not args.no_runtime) as env:
            seconds = 30.0 if args.duration is None else args.duration
            print(floor_table(args.python, env, directory, args.repeat, seconds))
        return
    if args.modules:
        with workdir("modules") as directory, answering_node(directory, not args.no_runtime) as env:
            trees = args.tree or [Path(__file__).resolve().parents[1]]
            print(modules_table(args.python, trees, env, args.repeat))
        return
    duration = 600.0 if args.duration is None else args.duration
    with workdir("footprint") as directory, answering_node(directory, not args.no_runtime) as env:
        log = directory / "selfcheck.log"

        def selfcheck_on(port: int) -> subprocess.Popen[bytes]:
            return start_selfcheck(env, port, log, python=args.python)

        def arenas_on(port: int) -> subprocess.Popen[bytes]:
            return start_selfcheck(env, port, log, GLIBC_ARENAS, python=args.python)

        web = {"SELFCHECK_WEB_CONFIG": str(web_config(directory))}

        def tls_on(port: int) -> subprocess.Popen[bytes]:
            return start_selfcheck(env, port, log, web, python=args.python)

        sc_ready = time_to_ready(selfcheck_on, "/readyz", args.starts)
        arenas_ready = time_to_ready(arenas_on, "/readyz", args.starts) if args.arenas else None
        tls_ready = time_to_ready(tls_on, "/readyz", args.starts, tls=True)
        ne_log = directory / "node-exporter.log"
        ne_ready = time_to_ready(lambda p: start_node_exporter(p, ne_log), "/metrics", args.starts)
        sc_port, ne_port, tls_port = free_port(), free_port(), free_port()
        selfcheck = selfcheck_on(sc_port)
        tls = tls_on(tls_port)
        exporter = start_node_exporter(ne_port, ne_log)
        arenas_port = free_port()
        arenas = arenas_on(arenas_port) if args.arenas else None
        sc_ports = [sc_port] if arenas is None else [sc_port, arenas_port]
        try:
            for port in sc_ports:
                wait_until(answers(port, "/readyz"), 15)
            wait_until(lambda: https_get(tls_port, "/readyz")[0] == 200, 15)
            wait_until(answers(ne_port, "/metrics"), 15)
            pids = {
                "selfcheck serve": selfcheck.pid,
                "selfcheck serve (TLS)": tls.pid,
                "prometheus-node-exporter": exporter.pid,
            }
            if arenas is not None:
                pids[ARENAS_ROW] = arenas.pid
            samples = drive(duration, sc_ports, ne_port, tls_port, pids)
        finally:
            stop(selfcheck)
            stop(tls)
            stop(exporter)
            if arenas is not None:
                stop(arenas)
    headers = [
        "process", "ready ms median (range)", "RSS at ready MB", "RSS at 1 min MB",
        "RSS mean MB", "RSS max MB", "RSS end MB", "CPU % of one core", "threads max",
        "fds max",
    ]  # fmt: skip
    rows = [
        summary("selfcheck serve", samples["selfcheck serve"], *sc_ready),
        summary("selfcheck serve (TLS)", samples["selfcheck serve (TLS)"], *tls_ready),
        summary("prometheus-node-exporter", samples["prometheus-node-exporter"], *ne_ready),
    ]
    if arenas_ready is not None:
        rows.insert(1, summary(ARENAS_ROW, samples[ARENAS_ROW], *arenas_ready))
    print(table(headers, rows))
    if duration >= 60:
        print()
        print(over_time(samples, [str(row[0]) for row in rows], duration))
    print(
        f"\n{duration:g} s at the default interval; probes every {PROBE_EVERY:g} s, "
        f"scrapes every {SCRAPE_EVERY:g} s; targets: CPU < 0.15 %, ready < 1 s (memory: --floor)."
    )


if __name__ == "__main__":
    main()
