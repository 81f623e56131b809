"""The exec-probe client: asks the local server and answers within its timeout.

The same loopback HTTP client as the checks (``selfcheck.host.sockets``: stdlib
``http.client`` over a connected socket) under one overall deadline, so a server that
accepts and never answers, or trickles its answer a byte at a time, still gets an exit code
within ``--timeout`` (1 s, the kubelet's default probe budget); ``requests`` alone would
take about a tenth of that to import.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from selfcheck.config import ConfigError, parse_listen
from selfcheck.host.sockets import Deadline, http_get

PATHS = {"live": "/livez", "ready": "/readyz", "startup": "/startupz"}
EXIT_MARGIN = 0.1
"""Seconds kept for printing and for the interpreter's exit once the deadline has passed."""


def _age() -> float:
    """Seconds since this process was executed: the kubelet's clock starts then, not when
    the imports are done (about 60 ms of interpreter start-up, bench/probe.py)."""
    try:
        stat = Path("/proc/self/stat").read_text(encoding="ascii")
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        now = float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, now - start_ticks / os.sysconf("SC_CLK_TCK"))


def _since_exec(timeout: float) -> Deadline:
    """``timeout`` seconds counted from the exec, less the margin to exit in."""
    return Deadline.started_ago(timeout, _age() + EXIT_MARGIN)


def probe(kind: str, listen: str | None, timeout: float) -> int:
    """0 when the server answers 200, 1 otherwise (the exit code exec probes read)."""
    try:
        host, port = parse_listen("SELFCHECK_LISTEN", listen or os.environ.get("SELFCHECK_LISTEN"))
    except ConfigError as exc:
        print(f"selfcheck: configuration error: {exc}", file=sys.stderr)
        return 3
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    path = PATHS[kind]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    target = f"{path}?verbose" if kind == "ready" else path
    try:
        reply = http_get(f"http://{where}{target}", _since_exec(timeout), connect_timeout=timeout)
    except OSError as exc:
        print(f"{path}: no answer from {where}: {exc}", file=sys.stderr)
        return 1
    stream = sys.stdout if reply.status == 200 else sys.stderr
    print(reply.body[:8192].decode("utf-8", errors="replace").rstrip(), file=stream)
    return 0 if reply.status == 200 else 1
