"""What every benchmark shares: the machine it ran on, tables, process sampling, servers.

Everything here talks to loopback only and every wait is bounded. Processes are sampled
from ``/proc/<pid>``: ``VmRSS`` is what the kubelet's memory limit counts, and the CPU
figure adds reaped children (``cutime``/``cstime``) because the ``origin_detection``
check forks a short-lived sender every cycle, and that is the sidecar's cost too.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
NODE_EXPORTER = "prometheus-node-exporter"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load (1 min) at start": os.getloadavg()[0].__format__(".2f"),
    }


def print_header(title: str, command: str) -> None:
    print(f"## {title}\n")
    print(f"command: `{command}`  ")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table, so the output pastes straight into `bench/results/`."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One look at a process: resident memory, CPU ticks so far, threads, open fds."""

    at: float
    rss_kb: int
    cpu_ticks: int
    threads: int
    fds: int

    @property
    def rss_mb(self) -> float:
        return self.rss_kb / 1024


def sample(pid: int) -> ProcSample:
    """Raises ``OSError`` once the process is gone."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text()
    after_comm = stat.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(after_comm[i]) for i in (11, 12, 13, 14))
    return ProcSample(
        at=time.monotonic(),
        rss_kb=int(fields["VmRSS"].split()[0]),
        cpu_ticks=utime + stime + cutime + cstime,
        threads=int(fields["Threads"]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
    )


def cpu_share(first: ProcSample, last: ProcSample) -> float:
    """Percent of one core used between two samples."""
    elapsed = last.at - first.at
    if elapsed <= 0:
        return float("nan")
    return 100 * (last.cpu_ticks - first.cpu_ticks) / CLK_TCK / elapsed


PYTHON_HELP = (
    "interpreter that runs selfcheck serve (default: this one); the docs/performance.md figures "
    "use a venv of Debian's python3 with a non-editable install, like the image and CI"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until(ready: Callable[[], bool], timeout: float, step: float = 0.005) -> float:
    """Seconds until ``ready()`` held; raises ``TimeoutError`` after ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if ready():
                return time.monotonic() - began
        time.sleep(step)
    raise TimeoutError(f"not ready within {timeout} s")


def answers(port: int, path: str, status: int = 200) -> Callable[[], bool]:
    return lambda: http_get(port, path, timeout=0.5)[0] == status


def start_selfcheck(
    env: Mapping[str, str],
    port: int,
    log: Path,
    extra_env: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> subprocess.Popen[bytes]:
    """``python -m selfcheck serve`` on loopback; ``python`` may be a deployment-like venv."""
    full = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        # a checkout measured with an interpreter that has another selfcheck installed
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        **env,
        **(extra_env or {}),
        "SELFCHECK_LISTEN": f"127.0.0.1:{port}",
    }
    with log.open("ab") as sink:
        return subprocess.Popen(
            [python, "-m", "selfcheck", "serve"], env=full, stdout=sink, stderr=sink, cwd="/"
        )


def start_node_exporter(port: int, log: Path, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    binary = shutil.which(NODE_EXPORTER)
    if binary is None:
        raise SystemExit(f"{NODE_EXPORTER} is not installed (Debian package {NODE_EXPORTER})")
    with log.open("ab") as sink:
        return subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{port}", *extra],
            stdout=sink,
            stderr=sink,
            cwd="/",
        )


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"sc-bench-{name}-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def answering_node(directory: Path, runtime: bool = True) -> Iterator[dict[str, str]]:
    """Everything the checks talk to, answering: the environment ``selfcheck`` should get.

    The Agent's own endpoints (DogStatsD, trace-agent, health and expvar ports) are the
    test suite's stand-ins, run in a separate process so that they do not share the
    measured process's interpreter lock; the runtime is a real containerd on a temporary
    socket (Debian package ``containerd``). Pod logs are a directory with one log file.
    """
    logs = directory / "pods" / "default_web-0_0000" / "web"
    logs.mkdir(parents=True)
    (logs / "0.log").write_text("2024-01-01T00:00:00Z stdout F hello\n")
    helper = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "_agent.py"), str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=str(REPO),
    )
    daemon = None
    try:
        assert helper.stdout is not None
        env: dict[str, str] = json.loads(helper.stdout.readline())
        env.update(DD_LOGS_ENABLED="true", SELFCHECK_POD_LOGS_DIR=str(directory / "pods"))
        env["DD_DOGSTATSD_ORIGIN_DETECTION"] = "true"
        if runtime:
            from tests.support.daemons import start_containerd

            daemon = start_containerd()
            env["DD_CRI_SOCKET_PATH"] = str(daemon.socket)
        yield env
    finally:
        if daemon is not None:
            daemon.stop()
            daemon.cleanup()
        if helper.stdin is not None:
            helper.stdin.close()
        try:
            helper.wait(5)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait(5)
