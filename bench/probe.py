"""Wall time of ``selfcheck probe`` from spawn to exit, against four kinds of server.

    python bench/probe.py [--runs 11] [--python PY]

The kubelet gives an exec probe ``timeoutSeconds`` (1 s by default) and counts a probe it
had to kill as failed, without its message. Each run spawns ``PY -m selfcheck probe live``
(interpreter start, imports, the request) against: a real ``selfcheck serve`` (200), a
closed port (refused), a listener that accepts and never answers, and one that trickles
its answer a byte every 0.2 s. The last two must end before 1 s from spawn: the probe's
deadline counts from its exec, less 0.1 s to print and exit in.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    PYTHON_HELP,
    answers,
    free_port,
    median,
    print_header,
    start_selfcheck,
    table,
    wait_until,
    workdir,
)
from tests.support.run import stop
from tests.support.standins import WedgedListener

TRICKLE = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 300 + b"\r\nContent-Length: 3\r\n\r\nok\n"


def probe_seconds(python: str, port: int, runs: int) -> tuple[list[float], set[int]]:
    seconds, codes = [], set()
    for _ in range(runs):
        began = time.monotonic()
        proc = subprocess.run(
            [python, "-m", "selfcheck", "probe", "live", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            timeout=30,
            check=False,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        seconds.append(time.monotonic() - began)
        codes.add(proc.returncode)
    return seconds, codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--python", default=sys.executable, help=PYTHON_HELP)
    args = parser.parse_args()
    print_header("Probe", "python bench/probe.py " + " ".join(sys.argv[1:]))
    rows: list[list[object]] = []

    def row(name: str, port: int) -> None:
        seconds, codes = probe_seconds(args.python, port, args.runs)
        exits = ",".join(str(c) for c in sorted(codes))
        rows.append([name, exits, f"{median(seconds):.3f}", f"{max(seconds):.3f}"])

    with workdir("probe") as directory:
        port = free_port()
        skip = "cgroups,os_release,passwd,runtime_socket,dogstatsd_socket,apm_socket,"
        skip += "origin_detection,pod_logs,agent_health,security"
        env = {"SELFCHECK_SKIP": skip, "HOST_PROC": "/proc"}
        server = start_selfcheck(env, port, directory / "serve.log", python=args.python)
        try:
            wait_until(answers(port, "/readyz"), 20)
            row("selfcheck serve (200)", port)
        finally:
            stop(server)
    row("closed port (refused)", free_port())
    with WedgedListener() as wedged:
        row("accepts, never answers", wedged.port)
    with WedgedListener(trickle=TRICKLE, step=0.2) as trickling:
        row("trickles a byte / 0.2 s", trickling.port)
    print(table(["server", "exit", "median s", "max s"], rows))
    print(f"\n{args.runs} runs each, spawn to exit; the probe's deadline: 1 s from its exec.")


if __name__ == "__main__":
    main()
