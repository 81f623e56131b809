"""``selfcheck fleet``: the fleet's verdicts, read from Prometheus's HTTP API.

Every sidecar already publishes its verdicts as metrics, so the fleet view is a handful of
PromQL instant queries, all evaluated at one instant (Prometheus's own clock, asked first)
and each answering a whole view for every node at once: the number of queries does not
grow with the fleet, and Prometheus does the aggregation (docs/fleet.md).

Nodes are told apart by the ``node`` label, which the PodMonitor
(``k8s/monitoring/podmonitor.yaml``) sets from ``__meta_kubernetes_pod_node_name``; the
alert rules carry the same label. Two pods on one node (a rollout) count once per status.

- **missing**: a node Prometheus knows of but has no fresh verdict from: its selfcheck
  target is down (``up == 0``), is up without selfcheck metrics, or has left service
  discovery while its series were present within the last hour (they are stale now). A
  reporting node without a result yet for a check (first cycle not finished) is counted
  as missing for that check.
- **since**: for ``failed`` and ``error``,
  ``selfcheck_check_last_success_timestamp_seconds``, the last ok or degraded run: every
  run after it failed, so that is exact. For ``degraded``, and for a check never ok since
  its sidecar started, the reason series (which exists only while that reason is current)
  counted over the last 6 hours times the scrape interval (``--scrape-interval``, 30 s as
  in the PodMonitor): exact while scrapes were regular; an interrupted streak counts its
  parts. At 6 hours or more it shows as ``>6h``. A subquery finding the first sample
  costs one evaluation per step and series: 1.7 s for 1,000 nodes alone, measured.

This module is the only one that imports ``requests`` for the fleet view (the sidecar
never loads it): it brings proxies from the environment, TLS with a CA file, basic auth
from the URL and a bearer token from a file, so it runs from a laptop after ``pip install``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
_GOOD_REASONS = "ok|disabled|not_enabled|not_applicable"  # ok and the skipped ones
DEFAULT_INTERVAL = 30.0  # the PodMonitor's scrape interval
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
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Missing:
    """A node without a fresh verdict (a check without a result is counted, not listed)."""

    node: str
    why: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class FleetView:
    url: str
    evaluated_at: float
    reporting: int
    counts: Mapping[str, Mapping[str, int]]
    failing: Sequence[Failing]
    missing: Sequence[Missing]
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """Over the fleet: 2 when a node fails a required check, 1 for anything else not ok."""
        if any(f.required and f.status in ("failed", "error") for f in self.failing):
            return EXIT_CRITICAL
        if self.failing or self.missing or any(row["missing"] for row in self.counts.values()):
            return EXIT_WARNING
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "prometheus": self.url,
            "evaluated_at": self.evaluated_at,
            "nodes": self.reporting + len(self.missing),
            "reporting": self.reporting,
            "checks": [{"check": cid, **self.counts[cid]} for cid in self.counts],
            "failing": [f.to_json() for f in self.failing],
            "missing": [m.to_json() for m in self.missing],
            "exit_code": self.exit_code,
        }


# -- the queries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Queries:
    """The PromQL of each view. ``selector`` is extra matchers (``cluster="prod"``) for all.

    Cost is in series touched per node, so each view selects the fewest: the reason series
    (one per check, and only the current reason exists) carry both the counts and the
    failing set; the joins add ``selfcheck_check_required`` and ``selfcheck_check_success``
    (one series per check each) rather than the five-fold one-hot status.
    """

    node: str = "node"
    selector: str = ""
    check: str | None = None

    def m(self, metric: str, *extra: str, per_check: bool = True, among: Sequence[str] = ()) -> str:
        parts = [self.selector.strip().strip(",")] if self.selector.strip() else []
        if per_check and self.check is not None:
            parts.append(f'check="{self.check}"')
        elif per_check and among:
            parts.append(f'check=~"{"|".join(among)}"')
        parts.extend(extra)
        return f"{metric}{{{','.join(parts)}}}"

    def first(self) -> dict[str, str]:
        """Views over every node; ``samples`` also names the checks not ok on some node
        within the window (a superset of the current ones: cheaper than narrowing it)."""
        n = self.node
        good = self.m("selfcheck_check_reason", f'reason=~"{_GOOD_REASONS}"')
        bad = self.m("selfcheck_check_reason", f'reason!~"{_GOOD_REASONS}"')
        ready = self.m("selfcheck_ready", per_check=False)
        up = self.m("up", UP_MATCHER, per_check=False)
        return {
            "counts": f"count by (check, reason) (group by ({n}, check, reason) ({good}))",
            "samples": f"count_over_time({bad}[{SINCE_WINDOW}])",
            "reporting": f"count(group by ({n}) ({ready}))",
            "missing_nodes": (
                f"(max by ({n}) ({up})"
                f" or (group by ({n}) (last_over_time({ready}[{GONE_WINDOW}])) * 0 - 1))"
                f" unless on ({n}) group by ({n}) ({ready})"
            ),
        }

    def second(self, checks: Sequence[str]) -> dict[str, str]:
        """Details of the non-ok pairs, selecting only the checks that have some."""
        bad = self.m("selfcheck_check_reason", f'reason!~"{_GOOD_REASONS}"', among=checks)
        required = self.m("selfcheck_check_required", among=checks)
        success = self.m("selfcheck_check_success", among=checks)
        last_ok = self.m("selfcheck_check_last_success_timestamp_seconds", among=checks)
        return {
            # value: required + 2 * success (success: ok or degraded)
            "failing": (
                f"({bad} * ignoring (reason) group_left () {required})"
                f" + ignoring (reason) group_left () (2 * {success})"
            ),
            "last_success": f"{last_ok} and ignoring (reason) {bad}",
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
        if response.status_code in (401, 403):
            raise FleetError(
                f"Prometheus at {self.shown} refused the credentials (HTTP {response.status_code})"
            )
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
    match = re.search(r"\[SSL: [A-Z_]+\] [^'\"(]+|\[Errno -?\d+\] [^'\")\]]+", text)
    return _clean(match.group(0).strip() if match else text)[:160]


def _clean(text: str) -> str:
    """Label values and errors come from a remote server: no terminal escapes reach the tty."""
    return _UNPRINTABLE.sub("?", text)


# -- assembling the view ---------------------------------------------------------------------


def _key(labels: Mapping[str, str], *drop: str) -> frozenset[tuple[str, str]]:
    return frozenset((k, v) for k, v in labels.items() if k not in ("__name__", *drop))


def collect(
    client: Prometheus,
    queries: Queries,
    interval: float = DEFAULT_INTERVAL,
    order: Sequence[str] = (),
) -> FleetView:
    """Two rounds of queries at one instant: the second only for the checks not ok somewhere."""
    began = time.monotonic()
    at = client.now()
    with ThreadPoolExecutor(max_workers=4) as pool:

        def ask(exprs: Mapping[str, str]) -> dict[str, list[Sample]]:
            futures = {name: pool.submit(client.vector, e, at) for name, e in exprs.items()}
            return {name: future.result() for name, future in futures.items()}

        answers = ask(queries.first())
        checks = sorted({s.labels.get("check", "") for s in answers["samples"]})
        if not all(_CHECK_ID.fullmatch(c) for c in checks):
            checks = []  # not an id: no narrowing rather than a regex of foreign text
        second = queries.second(checks)
        answers.update(ask(second) if answers["samples"] else {key: [] for key in second})
    view = assemble(client.shown, at, queries, answers, interval=interval, order=order)
    return dataclasses.replace(view, seconds=time.monotonic() - began)


def _since(
    f: Failing, samples: float | None, last_ok: float | None, at: float, interval: float
) -> tuple[float | None, str]:
    if f.status != "degraded" and last_ok is not None:
        return last_ok, "last_success"
    if samples is None:
        return None, "unknown"
    if samples * interval >= _seconds(SINCE_WINDOW) - interval:
        return at - _seconds(SINCE_WINDOW), "window"
    return at - samples * interval, "samples"


def _status(value: float, reason: str) -> str:
    """``2 * success`` in the value: degraded; else the runner's rule, error <=> exception."""
    if value >= 2:
        return "degraded"
    return "error" if reason == "exception" else "failed"


def assemble(
    url: str,
    at: float,
    queries: Queries,
    answers: Mapping[str, list[Sample]],
    *,
    interval: float = DEFAULT_INTERVAL,
    order: Sequence[str] = (),
) -> FleetView:
    node = queries.node
    counts: dict[str, dict[str, int]] = {}

    def row(cid: str) -> dict[str, int]:
        return counts.setdefault(cid, dict.fromkeys(COLUMNS, 0))

    for s in answers["counts"]:
        column = "ok" if s.labels.get("reason") == "ok" else "skipped"
        row(s.labels.get("check", ""))[column] += int(s.value)
    samples = {_key(s.labels): s.value for s in answers["samples"]}
    last_ok = {_key(s.labels): s.value for s in answers["last_success"]}
    failing = []
    for s in answers["failing"]:
        f = Failing(
            node=s.labels.get(node, ""),
            check=s.labels.get("check", ""),
            status=_status(s.value, s.labels.get("reason", "")),
            reason=s.labels.get("reason", ""),
            required=int(s.value) % 2 == 1,
            since=None,
            since_source="unknown",
            namespace=s.labels.get("namespace", ""),
            pod=s.labels.get("pod", ""),
        )
        since, source = _since(
            f, samples.get(_key(s.labels)), last_ok.get(_key(s.labels, "reason")), at, interval
        )
        failing.append(dataclasses.replace(f, since=since, since_source=source))
        row(f.check)[f.status] += 1
    missing = [
        Missing(s.labels.get(node, ""), _GONE_WHY.get(s.value, "unknown"))
        for s in answers["missing_nodes"]
    ]
    reporting = int(answers["reporting"][0].value) if answers["reporting"] else 0
    if queries.check is not None:
        row(queries.check)
    for values in counts.values():
        results = sum(values[c] for c in COLUMNS if c != "missing")
        values["missing"] = len(missing) + max(0, reporting - results)
    check_rank, failing_rank = _ranks(order)
    ordered = {cid: counts[cid] for cid in sorted(counts, key=check_rank)}
    failing.sort(key=failing_rank)
    missing.sort(key=lambda m: m.node)
    return FleetView(url, at, reporting, ordered, failing, missing)


def _ranks(order: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[Failing], Any]]:
    """Checks in the registry's order (unknown ones last); required failures first."""
    rank = {cid: i for i, cid in enumerate(order)}

    def check(cid: str) -> tuple[int, str]:
        return (rank.get(cid, len(rank)), cid)

    def failing(f: Failing) -> tuple[int, int, tuple[int, str], str]:
        critical = f.required and f.status in ("failed", "error")
        return (0 if critical else 1, BAD_STATUSES[::-1].index(f.status), check(f.check), f.node)

    return check, failing


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
    gone = len(view.missing)
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
                ("MISSING NODE", "WHY"),
                ([m.node or "(no node label)", m.why] for m in view.missing),
            ),
        ]
    lines += ["", _verdict(view)]
    return "\n".join(line[:_WIDTH] for line in lines)


def _verdict(view: FleetView) -> str:
    critical = {f.node for f in view.failing if f.required and f.status in ("failed", "error")}
    others = {f.node for f in view.failing} - critical
    if critical:
        return f"NOT READY: {len(critical)} node(s) fail a required check (exit 2)."
    if view.exit_code == EXIT_WARNING:
        return (
            f"{len(others)} node(s) degraded or failing an optional check,"
            f" {len(view.missing)} missing (exit 1)."
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


def _interval(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m)?", text.strip())
    value = float(match.group(1)) * (60 if match.group(2) == "m" else 1) if match else 0.0
    if not 0 < value <= 3600:
        raise FleetError(f"--scrape-interval: {text!r} is not a duration such as 30s or 1m")
    return value


def run(
    args: argparse.Namespace,
    known_checks: Sequence[str],
    out: Callable[[str], None] = print,
) -> int:
    """Exit code over the fleet; a ``FleetError`` is printed by the caller as one line."""
    if args.check is not None and not _CHECK_ID.fullmatch(args.check):
        raise FleetError(f"--check: {args.check!r} is not a check id")
    if not _LABEL_NAME.fullmatch(args.node_label):
        raise FleetError(f"--node-label: {args.node_label!r} is not a label name")
    if not (0 < args.timeout <= 300) or math.isnan(args.timeout):
        raise FleetError("--timeout must be between 0 and 300 seconds")
    interval = _interval(args.scrape_interval)
    url = args.prometheus or os.environ.get(URL_ENV) or DEFAULT_URL
    if args.bearer_token_file and urlsplit(url).username is not None:
        raise FleetError("give either basic auth in the URL or --bearer-token-file, not both")
    client = Prometheus(url, args.timeout, _token(args.bearer_token_file), args.ca_file or True)
    try:
        queries = Queries(args.node_label, args.selector, args.check)
        view = collect(client, queries, interval, list(known_checks))
    finally:
        client.close()
    if view.reporting == 0 and not view.missing:
        where = f" matching {{{args.selector}}}" if args.selector else ""
        raise FleetError(f"no selfcheck series{where} in Prometheus at {client.shown}")
    if args.check is not None and args.check not in known_checks:
        seen = view.counts.get(args.check, {})
        if not any(seen.get(c, 0) for c in COLUMNS if c != "missing"):
            raise FleetError(f"unknown check {args.check!r}: no node reports it")
    out(json.dumps(view.to_json(), indent=2) if args.json else render(view, args.limit))
    return view.exit_code
