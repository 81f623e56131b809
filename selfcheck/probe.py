"""The exec-probe client: asks the local server and answers within its timeout.

The same loopback HTTP client as the checks (``selfcheck.host.sockets``: stdlib
``http.client`` over a connected socket) under one overall deadline, so a server that
accepts and never answers, or trickles its answer a byte at a time, still gets an exit code
within ``--timeout`` (1 s, the kubelet's default probe budget); ``requests`` alone would
take about a tenth of that to import.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from selfcheck.config import ConfigError, parse_listen
from selfcheck.exitcodes import EXIT_UNKNOWN
from selfcheck.host.sockets import Deadline, HttpReply, connect_tcp, exchange, http_get

if TYPE_CHECKING:
    import ssl

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


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """How the probe speaks to a server behind a web configuration."""

    web_config: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def client_context(options: TlsOptions) -> ssl.SSLContext | None:
    """``None`` for plain HTTP; else a client context: without ``--ca-file`` no verification,
    as the kubelet's HTTPS probes (which never verify), with it the chain against that CA
    (not the name: the probe asks 127.0.0.1, which a pod's certificate need not name)."""
    path = options.web_config or os.environ.get("SELFCHECK_WEB_CONFIG")
    if not path:
        return None
    import ssl

    from selfcheck.http.webconfig import parse, read_document

    if not parse(Path(path), read_document(Path(path))).tls.enabled:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    if options.ca_file:
        context.load_verify_locations(cafile=options.ca_file)
    else:
        context.verify_mode = ssl.CERT_NONE
    if options.cert_file:
        context.load_cert_chain(options.cert_file, options.key_file)
    return context


@contextlib.contextmanager
def _alarm(deadline: Deadline) -> Iterator[None]:
    """The whole TLS exchange under the one deadline: an ``SSLSocket`` re-arms no timeout
    per read, so a timer interrupts whatever call is waiting when the budget runs out."""

    def expired(signum: int, frame: object) -> None:
        raise deadline.expired()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, deadline.left())
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def https_get(
    host: str, port: int, target: str, deadline: Deadline, context: ssl.SSLContext
) -> HttpReply:
    """``GET target`` over TLS within the deadline; failures are ``OSError`` values."""
    with _alarm(deadline):
        sock = connect_tcp(host, port, deadline, deadline.left())
        with context.wrap_socket(sock) as tls:
            return exchange(tls, f"{host}:{port}", target)  # type: ignore[arg-type]


def probe(kind: str, listen: str | None, timeout: float, tls: TlsOptions | None = None) -> int:
    """0 when the server answers 200, 1 otherwise (the exit code exec probes read)."""
    try:
        host, port = parse_listen("SELFCHECK_LISTEN", listen or os.environ.get("SELFCHECK_LISTEN"))
        context = client_context(tls or TlsOptions())
    except ConfigError as exc:
        print(f"selfcheck: configuration error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    except (ValueError, OSError) as exc:  # WebConfigError, a CA or key that does not load
        print(f"selfcheck: probe: TLS: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    path = PATHS[kind]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    target = f"{path}?verbose" if kind == "ready" else path
    try:
        if context is not None:
            reply = https_get(host, port, target, _since_exec(timeout), context)
        else:
            url = f"http://{where}{target}"
            reply = http_get(url, _since_exec(timeout), connect_timeout=timeout)
    except OSError as exc:
        print(f"{path}: no answer from {where}: {exc}", file=sys.stderr)
        return 1
    stream = sys.stdout if reply.status == 200 else sys.stderr
    print(reply.body[:8192].decode("utf-8", errors="replace").rstrip(), file=stream)
    return 0 if reply.status == 200 else 1
