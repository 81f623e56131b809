"""The exec-probe client: asks the local server and answers within its timeout.

Uses ``http.client`` rather than ``requests`` because importing ``requests`` alone costs
about a tenth of a second, a noticeable share of the kubelet's one-second probe budget.
"""

from __future__ import annotations

import http.client
import os
import sys

from selfcheck.config import ConfigError, parse_listen

PATHS = {"live": "/livez", "ready": "/readyz", "startup": "/startupz"}


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
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", f"{path}?verbose" if kind == "ready" else path)
        response = connection.getresponse()
        body = response.read(8192).decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        print(f"{path}: no answer from {host}:{port}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    stream = sys.stdout if response.status == 200 else sys.stderr
    print(body.rstrip(), file=stream)
    return 0 if response.status == 200 else 1
