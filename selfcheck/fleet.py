"""``selfcheck fleet``: the fleet's verdicts, read from Prometheus's HTTP API.

Every sidecar already publishes its verdicts as metrics, so the fleet view is a handful of
PromQL instant queries, all evaluated at one instant (Prometheus's own clock, asked first)
and each answering a whole view for every node at once: the number of queries does not
grow with the fleet, and Prometheus does the aggregation (DESIGN.md section 3).

Nodes are told apart by the ``node`` label, which the PodMonitor
(``k8s/monitoring/podmonitor.yaml``) sets from ``__meta_kubernetes_pod_node_name``; the
alert rules carry the same label. Two pods on one node (a rollout) count once per status.

- **missing**: a node Prometheus knows of but has no fresh verdict from: its selfcheck
  target is down (``up == 0``), is up without selfcheck metrics, or has left service
  discovery while its series were present within the last hour (they are stale now); or a
  node that reports but has no result yet for a check (first cycle not finished).
- **since**: for a non-ok check, the first scrape within the last 6 hours that showed the
  current reason (a subquery over the reason series, which exist only while that reason is
  current, so it costs nothing for healthy nodes), to Prometheus's rule evaluation
  interval (the subquery's default step; a reason younger than one step shows the last
  scrape's time). For ``failed`` and ``error`` it is never earlier than
  ``selfcheck_check_last_success_timestamp_seconds``, the last ok or degraded run, after
  which every run failed. A reason older than the window is shown as ``>6h``. A degraded
  check that was ok in between shows the earlier start.

This module is the only one that imports ``requests`` for the fleet view (the sidecar
never loads it): it brings proxies from the environment, TLS with a CA file, basic auth
from the URL and a bearer token from a file, so it runs from a laptop after ``pip install``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3
DEFAULT_URL = "http://127.0.0.1:9090"
URL_ENV = "SELFCHECK_PROMETHEUS_URL"
SCHEMA = "selfcheck.fleet/v1"

SINCE_WINDOW = "6h"
GONE_WINDOW = "1h"
UP_MATCHER = 'container="selfcheck"'  # the PodMonitor's target container, as in the alerts
BAD_STATUSES = ("degraded", "failed", "error")
COLUMNS = ("ok", "degraded", "failed", "error", "skipped", "missing")
_SKIPPED_REASONS = "ok|disabled|not_enabled|not_applicable"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_CHECK_ID = re.compile(r"[a-z0-9_]{1,64}")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_WIDTH = 100
_GONE_WHY = {
    0.0: "scrape failing (up == 0)",
    1.0: "scraped, but no selfcheck metrics",
    -1.0: f"no target any more (series stale, seen within {GONE_WINDOW})",
}


class FleetError(Exception):
    """One line for the user; always exit 3."""


@dataclass(frozen=True, slots=True)
class Sample:
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Failing:
    """A non-ok (node, check) with what the on-call person needs to act on it."""

    node: str
    check: str
    status: str
    reason: str
    required: bool
    since: float | None
    since_source: str
    namespace: str
    pod: str

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "check": self.check,
            "status": self.status,
            "reason": self.reason,
            "required": self.required,
            "since": self.since,
            "since_source": self.since_source,
            "namespace": self.namespace,
            "pod": self.pod,
        }


@dataclass(frozen=True, slots=True)
class Missing:
    node: str
    check: str | None  # None: the whole node
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "check": self.check, "why": self.why}


@dataclass(frozen=True, slots=True)
class FleetView:
    url: str
    evaluated_at: float
    reporting: int
    counts: Mapping[str, Mapping[str, int]]
    failing: Sequence[Failing]
    missing: Sequence[Missing]
    seconds: float = 0.0
    queries: Mapping[str, str] = field(default_factory=dict)

    @property
    def missing_nodes(self) -> list[Missing]:
        return [m for m in self.missing if m.check is None]

    @property
    def exit_code(self) -> int:
        """Over the fleet: 2 when a node fails a required check, 1 for anything else not ok."""
        if any(f.required and f.status in ("failed", "error") for f in self.failing):
            return EXIT_CRITICAL
        if self.failing or self.missing:
            return EXIT_WARNING
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "prometheus": self.url,
            "evaluated_at": self.evaluated_at,
            "nodes": self.reporting + len(self.missing_nodes),
            "reporting": self.reporting,
            "checks": [{"check": cid, **self.counts[cid]} for cid in self.counts],
            "failing": [f.to_json() for f in self.failing],
            "missing": [m.to_json() for m in self.missing],
            "exit_code": self.exit_code,
        }


# -- the queries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Queries:
    """The PromQL of each view. ``selector`` is extra matchers (``cluster="prod"``) for all."""

    node: str = "node"
    selector: str = ""
    check: str | None = None

    def m(self, metric: str, *extra: str, per_check: bool = True) -> str:
        parts = [self.selector.strip().strip(",")] if self.selector.strip() else []
        if per_check and self.check is not None:
            parts.append(f'check="{self.check}"')
        parts.extend(extra)
        return f"{metric}{{{','.join(parts)}}}"

    def all(self) -> dict[str, str]:
        n = self.node
        hot = f"({self.m('selfcheck_check_status')} == 1)"
        bad = self.m("selfcheck_check_status", f'status=~"{"|".join(BAD_STATUSES)}"')
        bad_reason = self.m("selfcheck_check_reason", f'reason!~"{_SKIPPED_REASONS}"')
        failed = self.m("selfcheck_check_status", 'status=~"failed|error"')
        ready = self.m("selfcheck_ready", per_check=False)
        up = self.m("up", UP_MATCHER, per_check=False)
        return {
            "counts": f"count by (check, status) (max by ({n}, check, status) {hot})",
            "failing": (
                f"({self.m('selfcheck_check_required')}"
                f" * ignoring (status) group_left (status) ({bad} == 1))"
                f" * ignoring (reason, status) group_left (reason)"
                f" {self.m('selfcheck_check_reason')}"
            ),
            "first_seen": (
                f"(min_over_time(timestamp({bad_reason})[{SINCE_WINDOW}:])"
                f" or timestamp({bad_reason})) and {bad_reason}"
            ),
            "last_success": (
                f"{self.m('selfcheck_check_last_success_timestamp_seconds')}"
                f" and ignoring (status) ({failed} == 1)"
            ),
            "reporting": f"count(group by ({n}) ({ready}))",
            "missing_nodes": (
                f"(max by ({n}) ({up})"
                f" or (group by ({n}) (last_over_time({ready}[{GONE_WINDOW}])) * 0 - 1))"
                f" unless on ({n}) group by ({n}) ({ready})"
            ),
            "no_result": (
                f"group by ({n}, check) ({self.m('selfcheck_check_status')})"
                f" unless on ({n}, check) {hot}"
            ),
        }


# -- talking to Prometheus -------------------------------------------------------------------


def redact(url: str) -> str:
    """The URL as it may be printed: never the password of basic auth."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


class Prometheus:
    """Instant queries over ``POST /api/v1/query``; every failure becomes one ``FleetError``."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        token: str | None = None,
        verify: bool | str = True,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FleetError(f"--prometheus must be an http(s) URL, got {redact(url)!r}")
        self.url = url.rstrip("/")
        self.shown = redact(self.url)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.verify = verify
        self.session.headers["Accept"] = "application/json"
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.session.close()

    def _post(self, form: Mapping[str, str]) -> requests.Response:
        endpoint = f"{self.url}/api/v1/query"
        try:
            return self.session.post(endpoint, data=dict(form), timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise FleetError(
                f"TLS error talking to Prometheus at {self.shown}: {_first(exc)}"
            ) from None
        except requests.exceptions.Timeout:
            raise FleetError(
                f"Prometheus at {self.shown} did not answer within {self.timeout:g} s"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise FleetError(f"cannot reach Prometheus at {self.shown}: {_first(exc)}") from None

    def query(self, expr: str, at: float | None = None) -> tuple[str, Any]:
        """``(resultType, result)`` of one instant query, checked to be Prometheus's answer."""
        form = {"query": expr}
        if at is not None:
            form["time"] = f"{at:.3f}"
        response = self._post(form)
        body = _json_or_none(response)
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise FleetError(
                f"{self.shown} is not a Prometheus API (HTTP {response.status_code}, {kind}"
                " answer to /api/v1/query)"
            )
        if body["status"] == "error":
            what = _clean(str(body.get("errorType", "error")))
            detail = _clean(str(body.get("error", "")))[:200]
            raise FleetError(
                f"Prometheus at {self.shown} refused the query (HTTP {response.status_code},"
                f" {what}): {detail}"
            )
        data = body.get("data")
        if not isinstance(data, dict) or "resultType" not in data or "result" not in data:
            raise FleetError(f"{self.shown} answered /api/v1/query without data.resultType")
        return str(data["resultType"]), data["result"]

    def vector(self, expr: str, at: float) -> list[Sample]:
        kind, result = self.query(expr, at)
        if kind != "vector" or not isinstance(result, list):
            raise FleetError(f"{self.shown} answered {kind!r} where a vector was expected")
        samples = []
        for item in result:
            try:
                labels = {str(k): _clean(str(v)) for k, v in item["metric"].items()}
                samples.append(Sample(labels, float(item["value"][1])))
            except (KeyError, IndexError, TypeError, ValueError, AttributeError):
                raise FleetError(f"{self.shown} answered a malformed vector sample") from None
        return samples

    def now(self) -> float:
        """Prometheus's clock, so a laptop's skew never shifts the evaluation instant."""
        kind, result = self.query("time()")
        try:
            at = float(result[0])
        except (ValueError, TypeError, IndexError, KeyError):
            at = math.nan
        if kind != "scalar" or not math.isfinite(at):
            raise FleetError(f"{self.shown} answered time() with {kind!r}")
        return at


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _first(exc: BaseException) -> str:
    """The errno message, which urllib3 wraps several levels deep in its own text."""
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] [^'\")\]]+|Name or service not known|timed out", text)
    return _clean(match.group(0) if match else text)[:160]


def _clean(text: str) -> str:
    """Label values and errors come from a remote server: no terminal escapes reach the tty."""
    return _UNPRINTABLE.sub("?", text)


# -- assembling the view ---------------------------------------------------------------------


def _key(labels: Mapping[str, str], *drop: str) -> frozenset[tuple[str, str]]:
    return frozenset((k, v) for k, v in labels.items() if k not in ("__name__", *drop))


def collect(client: Prometheus, queries: Queries) -> FleetView:
    began = time.monotonic()
    at = client.now()
    exprs = queries.all()
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(client.vector, expr, at) for name, expr in exprs.items()}
        answers = {name: future.result() for name, future in futures.items()}
    view = assemble(client.shown, at, queries, answers, exprs)
    return FleetView(
        view.url,
        view.evaluated_at,
        view.reporting,
        view.counts,
        view.failing,
        view.missing,
        time.monotonic() - began,
        exprs,
    )


def _since(
    labels: Mapping[str, str],
    at: float,
    first_seen: Mapping[frozenset[tuple[str, str]], float],
    last_ok: Mapping[frozenset[tuple[str, str]], float],
) -> tuple[float | None, str]:
    seen = first_seen.get(_key(labels, "status"))
    ok = last_ok.get(_key(labels, "status", "reason"))
    window_start = at - _seconds(SINCE_WINDOW) + 60
    if ok is not None and (seen is None or ok >= seen):
        return ok, "last_success"
    if seen is None:
        return None, "unknown"
    if seen <= window_start:
        return seen, "window"
    return seen, "first_seen"


def assemble(
    url: str,
    at: float,
    queries: Queries,
    answers: Mapping[str, list[Sample]],
    exprs: Mapping[str, str] | None = None,
) -> FleetView:
    node = queries.node
    counts: dict[str, dict[str, int]] = {}
    for s in answers["counts"]:
        row = counts.setdefault(s.labels.get("check", ""), dict.fromkeys(COLUMNS, 0))
        status = s.labels.get("status", "")
        if status in row:
            row[status] += int(s.value)
    first_seen = {_key(s.labels): s.value for s in answers["first_seen"]}
    last_ok = {_key(s.labels): s.value for s in answers["last_success"]}
    failing = []
    for s in answers["failing"]:
        since, source = _since(s.labels, at, first_seen, last_ok)
        failing.append(
            Failing(
                node=s.labels.get(node, ""),
                check=s.labels.get("check", ""),
                status=s.labels.get("status", ""),
                reason=s.labels.get("reason", ""),
                required=s.value >= 1.0,
                since=since,
                since_source=source,
                namespace=s.labels.get("namespace", ""),
                pod=s.labels.get("pod", ""),
            )
        )
    missing = [
        Missing(s.labels.get(node, ""), None, _GONE_WHY.get(s.value, "unknown"))
        for s in answers["missing_nodes"]
    ]
    missing += [
        Missing(s.labels.get(node, ""), s.labels.get("check", ""), "no result yet")
        for s in answers["no_result"]
    ]
    whole_nodes = sum(1 for m in missing if m.check is None)
    for m in missing:
        if m.check is not None:
            counts.setdefault(m.check, dict.fromkeys(COLUMNS, 0))["missing"] += 1
    for row in counts.values():
        row["missing"] += whole_nodes
    reporting = int(answers["reporting"][0].value) if answers["reporting"] else 0
    if queries.check is not None:
        counts.setdefault(queries.check, dict.fromkeys(COLUMNS, 0))
    ordered = {cid: counts[cid] for cid in sorted(counts, key=_check_rank)}
    failing.sort(key=_failing_rank)
    missing.sort(key=lambda m: (m.check is not None, m.node, m.check or ""))
    return FleetView(url, at, reporting, ordered, failing, missing, 0.0, dict(exprs or {}))


def _check_rank(cid: str) -> tuple[int, str]:
    from selfcheck.registry import _ORDER

    return (_ORDER.index(cid) if cid in _ORDER else len(_ORDER), cid)


def _failing_rank(f: Failing) -> tuple[int, int, tuple[int, str], str]:
    critical = f.required and f.status in ("failed", "error")
    return (0 if critical else 1, BAD_STATUSES[::-1].index(f.status), _check_rank(f.check), f.node)


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(duration[:-1]) * units[duration[-1]]


# -- the text report -------------------------------------------------------------------------


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _since_text(f: Failing, at: float) -> str:
    if f.since is None:
        return "-"
    if f.since_source == "window":
        return f">{SINCE_WINDOW}"
    return age(at - f.since)


def _rows(head: Sequence[str], rows: Iterable[Sequence[str]], first_max: int = 40) -> list[str]:
    """Left-aligned columns; a first cell too long for 100 columns gets a line of its own."""
    rows = list(rows)
    widths = [len(h) for h in head]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    rest = sum(w + 2 for w in widths[1:])
    widths[0] = min(widths[0], max(len(head[0]), _WIDTH - rest, 8), first_max)
    lines = []
    for row in [list(head), *rows]:
        tail = "  ".join(f"{c:<{w}}" for c, w in zip(row[1:], widths[1:], strict=True))
        if len(row[0]) > widths[0]:
            lines.append(row[0][:_WIDTH])
            lines.append((" " * (widths[0] + 2) + tail).rstrip())
        else:
            lines.append(f"{row[0]:<{widths[0]}}  {tail}".rstrip())
    return lines


def render(view: FleetView, limit: int = 100) -> str:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(view.evaluated_at))
    gone = len(view.missing_nodes)
    lines = [
        f"Prometheus {view.url} at {at}: {view.reporting + gone} nodes,"
        f" {view.reporting} reporting, {gone} missing",
        "",
    ]
    head = ("CHECK", *(c.upper() for c in COLUMNS))
    lines += _rows(
        head, ([cid, *(str(row[c]) for c in COLUMNS)] for cid, row in view.counts.items())
    )
    if view.failing:
        shown = view.failing if limit <= 0 else view.failing[:limit]
        lines += [
            "",
            *_rows(
                ("NODE", "CHECK", "STATUS", "NEED", "REASON", "SINCE"),
                (
                    [
                        f.node or "(no node label)",
                        f.check,
                        f.status.upper() if f.status != "degraded" else f.status,
                        "required" if f.required else "optional",
                        f.reason,
                        _since_text(f, view.evaluated_at),
                    ]
                    for f in shown
                ),
            ),
        ]
        if len(shown) < len(view.failing):
            lines.append(f"... and {len(view.failing) - len(shown)} more (--limit 0 or --json)")
    if view.missing:
        lines += [
            "",
            *_rows(
                ("MISSING NODE", "CHECK", "WHY"),
                ([m.node or "(no node label)", m.check or "(all)", m.why] for m in view.missing),
            ),
        ]
    lines += ["", _verdict(view)]
    return "\n".join(line[:_WIDTH] for line in lines)


def _verdict(view: FleetView) -> str:
    critical = {f.node for f in view.failing if f.required and f.status in ("failed", "error")}
    others = {f.node for f in view.failing} - critical
    if critical:
        return f"NOT READY: {len(critical)} node(s) fail a required check (exit 2)."
    if others or view.missing:
        return (
            f"{len(others)} node(s) degraded or failing an optional check,"
            f" {len(view.missing_nodes)} missing (exit 1)."
        )
    return "Every reporting node is ok (exit 0)."


# -- the command -----------------------------------------------------------------------------


def _token(path: str | None) -> str | None:
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


def run(
    args: argparse.Namespace,
    known_checks: Iterable[str],
    out: Callable[[str], None] = print,
) -> int:
    """Exit code over the fleet; a ``FleetError`` is printed by the caller as one line."""
    if args.check is not None and not _CHECK_ID.fullmatch(args.check):
        raise FleetError(f"--check: {args.check!r} is not a check id")
    if not _LABEL_NAME.fullmatch(args.node_label):
        raise FleetError(f"--node-label: {args.node_label!r} is not a label name")
    if not (0 < args.timeout <= 300) or math.isnan(args.timeout):
        raise FleetError("--timeout must be between 0 and 300 seconds")
    url = args.prometheus or os.environ.get(URL_ENV) or DEFAULT_URL
    client = Prometheus(url, args.timeout, _token(args.bearer_token_file), args.ca_file or True)
    try:
        view = collect(client, Queries(args.node_label, args.selector, args.check))
    finally:
        client.close()
    if view.reporting == 0 and not view.missing:
        where = f" matching {{{args.selector}}}" if args.selector else ""
        raise FleetError(f"no selfcheck series{where} in Prometheus at {client.shown}")
    if args.check is not None and args.check not in set(known_checks):
        seen = view.counts.get(args.check, {})
        if not any(seen.get(c, 0) for c in COLUMNS if c != "missing"):
            raise FleetError(f"unknown check {args.check!r}: no node reports it")
    out(json.dumps(view.to_json(), indent=2) if args.json else render(view, args.limit))
    return view.exit_code
