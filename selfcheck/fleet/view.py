"""The fleet view assembled from the answers: counts per check, failing pairs, missing nodes.

Two pods on one node (a rollout) count once per status.

- **missing**: a node Prometheus knows of but has no fresh verdict from: its selfcheck
  target is down (``up == 0``), is up without selfcheck metrics, or has left service
  discovery while its series were present within the last hour (they are stale now). A
  reporting node without a result yet for a check (first cycle not finished) is counted
  as missing for that check.
- **since**: for ``failed`` and ``error``, the last ok or degraded run
  (``selfcheck_check_last_success_timestamp_seconds``): every run after it failed, so that is
  exact. For ``degraded``, and for a check never ok since its sidecar started, the reason
  series (which exists only while that reason is current) counted over the last 6 hours times
  the scrape interval (``--scrape-interval``, 30 s as in the PodMonitor): exact while scrapes
  were regular; an interrupted streak counts its parts. At 6 hours or more it is ``window``.
  A subquery finding the first sample would cost one evaluation per step and series.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from selfcheck.exitcodes import EXIT_CRITICAL, EXIT_OK, EXIT_WARNING
from selfcheck.fleet.client import Prometheus, Sample
from selfcheck.fleet.queries import GONE_WINDOW, SINCE_WINDOW, Queries, seconds
from selfcheck.model import Reason, Status

SCHEMA = "selfcheck.fleet/v1"
DEFAULT_INTERVAL = 30.0  # the PodMonitor's scrape interval
MISSING = "missing"
COLUMNS = (
    *(str(s) for s in (Status.OK, Status.DEGRADED, Status.FAILED, Status.ERROR, Status.SKIPPED)),
    MISSING,
)
"""The columns of the counts, in the report's order."""
BAD_STATUSES = (Status.DEGRADED, Status.FAILED, Status.ERROR)
CHECK_ID = re.compile(r"[a-z0-9_]{1,64}")
_GONE_WHY = {
    0.0: "scrape failing (up == 0)",
    1.0: "scraped, but no selfcheck metrics",
    -1.0: f"no target any more (series stale, seen within {GONE_WINDOW})",
}


@dataclass(frozen=True, slots=True)
class Failing:
    """A non-ok (node, check) with what the on-call person needs to act on it."""

    node: str
    check: str
    status: Status
    reason: str
    required: bool
    since: float | None
    since_source: str
    namespace: str
    pod: str

    @property
    def critical(self) -> bool:
        """A required check failed or errored: the node is not ready."""
        return self.required and self.status in (Status.FAILED, Status.ERROR)


@dataclass(frozen=True, slots=True)
class Missing:
    """A node without a fresh verdict (a check without a result is counted, not listed)."""

    node: str
    why: str


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
        if any(f.critical for f in self.failing):
            return EXIT_CRITICAL
        if self.failing or self.missing or any(row[MISSING] for row in self.counts.values()):
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
            "failing": [dataclasses.asdict(f) for f in self.failing],
            "missing": [dataclasses.asdict(m) for m in self.missing],
            "exit_code": self.exit_code,
        }


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
        if not all(CHECK_ID.fullmatch(c) for c in checks):
            checks = []  # not an id: no narrowing rather than a regex of foreign text
        second = queries.second(checks)
        answers.update(ask(second) if answers["samples"] else {key: [] for key in second})
    view = assemble(client.shown, at, queries, answers, interval=interval, order=order)
    return dataclasses.replace(view, seconds=time.monotonic() - began)


def _key(labels: Mapping[str, str], *drop: str) -> frozenset[tuple[str, str]]:
    """A series' identity without its name (and without ``drop``), to join two answers."""
    return frozenset((k, v) for k, v in labels.items() if k not in ("__name__", *drop))


def _since(
    f: Failing, samples: float | None, last_ok: float | None, at: float, interval: float
) -> tuple[float | None, str]:
    """When the pair stopped being ok, and how that is known (see the module's docstring)."""
    if f.status != Status.DEGRADED and last_ok is not None:
        return last_ok, "last_success"
    if samples is None:
        return None, "unknown"
    if samples * interval >= seconds(SINCE_WINDOW) - interval:
        return at - seconds(SINCE_WINDOW), "window"
    return at - samples * interval, "samples"


def _status(value: float, reason: str) -> Status:
    """``2 * success`` in the value: degraded; else the runner's rule, error <=> exception."""
    if value >= 2:
        return Status.DEGRADED
    return Status.ERROR if reason == Reason.EXCEPTION else Status.FAILED


def _failing(sample: Sample, node: str) -> Failing:
    """A non-ok pair from the ``failing`` query, whose value is required + 2 * success."""
    labels = sample.labels
    return Failing(
        node=labels.get(node, ""),
        check=labels.get("check", ""),
        status=_status(sample.value, labels.get("reason", "")),
        reason=labels.get("reason", ""),
        required=int(sample.value) % 2 == 1,
        since=None,
        since_source="unknown",
        namespace=labels.get("namespace", ""),
        pod=labels.get("pod", ""),
    )


def assemble(
    url: str,
    at: float,
    queries: Queries,
    answers: Mapping[str, list[Sample]],
    *,
    interval: float = DEFAULT_INTERVAL,
    order: Sequence[str] = (),
) -> FleetView:
    """The view from the answers of both rounds, checks in the registry's ``order``."""
    counts: dict[str, dict[str, int]] = {}

    def row(cid: str) -> dict[str, int]:
        return counts.setdefault(cid, dict.fromkeys(COLUMNS, 0))

    for s in answers["counts"]:
        column = Status.OK if s.labels.get("reason") == Reason.OK else Status.SKIPPED
        row(s.labels.get("check", ""))[column] += int(s.value)
    samples = {_key(s.labels): s.value for s in answers["samples"]}
    last_ok = {_key(s.labels): s.value for s in answers["last_success"]}
    failing = []
    for s in answers["failing"]:
        f = _failing(s, queries.node)
        since, source = _since(
            f, samples.get(_key(s.labels)), last_ok.get(_key(s.labels, "reason")), at, interval
        )
        failing.append(dataclasses.replace(f, since=since, since_source=source))
        row(f.check)[f.status] += 1
    missing = [
        Missing(s.labels.get(queries.node, ""), _GONE_WHY.get(s.value, "unknown"))
        for s in answers["missing_nodes"]
    ]
    reporting = int(answers["reporting"][0].value) if answers["reporting"] else 0
    if queries.check is not None:
        row(queries.check)
    for values in counts.values():
        results = sum(values[c] for c in COLUMNS if c != MISSING)
        values[MISSING] = len(missing) + max(0, reporting - results)
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
        return (0 if f.critical else 1, BAD_STATUSES[::-1].index(f.status), check(f.check), f.node)

    return check, failing
