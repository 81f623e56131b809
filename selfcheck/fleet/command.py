"""``selfcheck fleet``: the flags checked, the view collected, printed as text or JSON.

The flags are declared in ``selfcheck.cli`` so that parsing never imports ``requests``; their
values are checked here, each bad one a ``FleetError`` line (exit 3), before any query.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from selfcheck.fleet.client import FleetError, Prometheus
from selfcheck.fleet.queries import Queries
from selfcheck.fleet.render import render
from selfcheck.fleet.view import CHECK_ID, COLUMNS, MISSING, FleetView, collect

DEFAULT_URL = "http://127.0.0.1:9090"
URL_ENV = "SELFCHECK_PROMETHEUS_URL"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _token(path: str | None) -> str | None:
    """The bearer token from ``--bearer-token-file``, never empty."""
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetError(
            f"cannot read --bearer-token-file {path}: {exc.__class__.__name__}"
        ) from None
    if not token:
        raise FleetError(f"--bearer-token-file {path} is empty")
    return token


def _interval(text: str) -> float:
    """``--scrape-interval`` in seconds (``30s``, ``1m``, ``15``), at most an hour."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m)?", text.strip())
    value = float(match.group(1)) * (60 if match.group(2) == "m" else 1) if match else 0.0
    if not 0 < value <= 3600:
        raise FleetError(f"--scrape-interval: {text!r} is not a duration such as 30s or 1m")
    return value


def _check_flags(args: argparse.Namespace) -> None:
    """The flags ``argparse`` cannot judge: ids, label names and bounds."""
    if args.check is not None and not CHECK_ID.fullmatch(args.check):
        raise FleetError(f"--check: {args.check!r} is not a check id")
    if not _LABEL_NAME.fullmatch(args.node_label):
        raise FleetError(f"--node-label: {args.node_label!r} is not a label name")
    if not (0 < args.timeout <= 300) or math.isnan(args.timeout):
        raise FleetError("--timeout must be between 0 and 300 seconds")


def _check_answer(view: FleetView, args: argparse.Namespace, known: Sequence[str]) -> None:
    """An empty fleet, or a check nobody knows, is a mistake in the command, not exit 0."""
    if view.reporting == 0 and not view.missing:
        where = f" matching {{{args.selector}}}" if args.selector else ""
        raise FleetError(f"no selfcheck series{where} in Prometheus at {view.url}")
    if args.check is not None and args.check not in known:
        seen = view.counts.get(args.check, {})
        if not any(seen.get(c, 0) for c in COLUMNS if c != MISSING):
            raise FleetError(f"unknown check {args.check!r}: no node reports it")


def _client_certificate(args: argparse.Namespace) -> tuple[str, str] | None:
    """``--cert-file``/``--key-file``, for a Prometheus whose web configuration wants one."""
    cert, key = getattr(args, "cert_file", None), getattr(args, "key_file", None)
    if not cert and not key:
        return None
    if not cert or not key:
        raise FleetError("--cert-file and --key-file go together")
    for flag, path in (("--cert-file", cert), ("--key-file", key)):
        if not Path(path).is_file():
            raise FleetError(f"{flag} {path}: no such file")
    return cert, key


def run(
    args: argparse.Namespace,
    known_checks: Sequence[str],
    out: Callable[[str], None] = print,
) -> int:
    """Exit code over the fleet; a ``FleetError`` is printed by the caller as one line."""
    _check_flags(args)
    interval = _interval(args.scrape_interval)
    url = args.prometheus or os.environ.get(URL_ENV) or DEFAULT_URL
    if args.bearer_token_file and urlsplit(url).username is not None:
        raise FleetError("give either basic auth in the URL or --bearer-token-file, not both")
    client = Prometheus(url, args.timeout, _token(args.bearer_token_file), args.ca_file or True)
    client.session.cert = _client_certificate(args)
    try:
        queries = Queries(args.node_label, args.selector, args.check)
        view = collect(client, queries, interval, list(known_checks))
    finally:
        client.close()
    _check_answer(view, args, known_checks)
    out(json.dumps(view.to_json(), indent=2) if args.json else render(view, args.limit))
    return view.exit_code
