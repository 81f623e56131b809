"""Prometheus families rendered from a snapshot, once per snapshot, never per scrape.

The collector only reads the immutable snapshot; rendering bytes is cached per snapshot
generation and content type, so a scrape costs a dictionary lookup and cannot trigger I/O
or inflate the counters (they count check runs, not scrapes).
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from selfcheck import __version__
from selfcheck.model import Snapshot, Status
from selfcheck.registry import CheckSpec

PREFIX = "selfcheck"
# The family names other modules read back (the fleet view's PromQL, the alert rules' tests).
CHECK_STATUS = f"{PREFIX}_check_status"
CHECK_SUCCESS = f"{PREFIX}_check_success"
CHECK_REQUIRED = f"{PREFIX}_check_required"
CHECK_REASON = f"{PREFIX}_check_reason"
CHECK_LAST_SUCCESS = f"{PREFIX}_check_last_success_timestamp_seconds"
READY = f"{PREFIX}_ready"


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    """A gauge family; ``name`` is the whole family name, or its part after the prefix."""
    full = name if name.startswith(f"{PREFIX}_") else f"{PREFIX}_{name}"
    return GaugeMetricFamily(full, doc, labels=labels)


class SnapshotCollector(Collector):
    """Yields fresh families from whatever snapshot ``get_snapshot`` returns right now."""

    def __init__(
        self,
        get_snapshot: Callable[[], Snapshot],
        checks: Mapping[str, CheckSpec],
        is_ready: Callable[[Snapshot], bool],
    ) -> None:
        self._get_snapshot = get_snapshot
        self._checks = checks
        self.is_ready = is_ready

    def collect(self) -> Iterator[Metric]:
        snap = self._get_snapshot()
        yield from self._per_check(snap)
        yield from self._figures(snap)
        yield from self._findings(snap)
        yield from self._states(snap)
        ready = _gauge(
            READY, "1 when no required check is failed or errored and results are fresh."
        )
        ready.add_metric([], 1.0 if self.is_ready(snap) else 0.0)
        yield ready
        build = InfoMetricFamily(f"{PREFIX}_build", "selfcheck build information.")
        build.add_metric([], {"version": __version__, "python_version": platform.python_version()})
        yield build
        node = InfoMetricFamily(f"{PREFIX}_node", "What the checks learned about the node.")
        node.add_metric([], snap.node_info())
        yield node

    def _per_check(self, snap: Snapshot) -> Iterator[Metric]:
        status = _gauge(CHECK_STATUS, "Current status of each check, one-hot.", ["check", "status"])
        success = _gauge(CHECK_SUCCESS, "1 when the check is ok or degraded.", ["check"])
        required = _gauge(CHECK_REQUIRED, "1 when the check gates readiness.", ["check"])
        reason = _gauge(
            CHECK_REASON, "1 for the current reason of each check.", ["check", "reason"]
        )
        duration = _gauge("check_duration_seconds", "Duration of the last run.", ["check"])
        last_run = _gauge(
            "check_last_run_timestamp_seconds", "Unix time the last run finished.", ["check"]
        )
        last_ok = _gauge(
            CHECK_LAST_SUCCESS,
            "Unix time of the last ok or degraded run.",
            ["check"],
        )
        runs = CounterMetricFamily(f"{PREFIX}_check_runs", "Check runs.", labels=["check"])
        failures = CounterMetricFamily(
            f"{PREFIX}_check_failures", "Check runs that ended failed or error.", labels=["check"]
        )
        view = _gauge(
            "check_view",
            "1 for whose view the verdict is: agent (the Agent container's root and identity) "
            "or own (selfcheck's own mounts).",
            ["check", "view"],
        )
        for cid in snap.check_ids:
            result = snap.results.get(cid)
            counters = snap.counters[cid]
            for st in Status:
                hot = result is not None and result.status == st
                status.add_metric([cid, str(st)], 1.0 if hot else 0.0)
            success.add_metric([cid], 1.0 if result and result.status.is_success else 0.0)
            required.add_metric([cid], 1.0 if cid in snap.required else 0.0)
            runs.add_metric([cid], float(counters.runs))
            failures.add_metric([cid], float(counters.failures))
            if result is None:
                continue
            reason.add_metric([cid, str(result.reason)], 1.0)
            view.add_metric([cid, result.view], 1.0)
            duration.add_metric([cid], result.duration_seconds)
            last_run.add_metric([cid], result.finished_at)
            if counters.last_success_at is not None:
                last_ok.add_metric([cid], counters.last_success_at)
        yield from (
            status, success, required, reason, view, duration, last_run, last_ok, runs, failures
        )  # fmt: skip

    def _figures(self, snap: Snapshot) -> Iterator[Metric]:
        for cid, spec in self._checks.items():
            result = snap.results.get(cid)
            values = result.outcome.figures if result is not None else {}
            for figure, doc in spec.figures.items():
                family = _gauge(f"{cid}_{figure}", doc)
                if figure in values:
                    family.add_metric([], float(values[figure]))
                yield family

    def _findings(self, snap: Snapshot) -> Iterator[Metric]:
        """One family for every check's findings; ids come from each check's declared set."""
        family = _gauge(
            "finding", "1 per active finding of any check.", ["check", "finding", "severity"]
        )
        for cid in snap.check_ids:
            result = snap.results.get(cid)
            for finding in result.outcome.findings if result is not None else ():
                family.add_metric([cid, finding.id, str(finding.severity)], 1.0)
        yield family

    def _states(self, snap: Snapshot) -> Iterator[Metric]:
        """Each check's enumerated gauges, from the closed set its spec declares."""
        for cid, spec in self._checks.items():
            result = snap.results.get(cid)
            for name, state in spec.states.items():
                family = _gauge(f"{cid}_{name}", state.doc, [state.label])
                value = result.outcome.details.get(name) if result is not None else None
                if value in state.values:  # a label value: only from the closed set
                    family.add_metric([str(value)], 1.0)
                yield family


class Exposition:
    """Renders the registry once per (snapshot, readiness, format) and serves the bytes."""

    def __init__(self, collector: SnapshotCollector, get_snapshot: Callable[[], Snapshot]) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(collector)
        self._collector = collector
        self._get_snapshot = get_snapshot
        self._lock = threading.Lock()
        self._key: tuple[int, bool] | None = None
        self._cache: dict[str, tuple[bytes, str]] = {}

    def render(self, accept: str = "") -> tuple[bytes, str]:
        snap = self._get_snapshot()
        openmetrics = "application/openmetrics-text" in accept
        key = (snap.generation, self._collector.is_ready(snap))
        variant = "openmetrics" if openmetrics else "text"
        with self._lock:
            if key != self._key:
                self._key, self._cache = key, {}
            cached = self._cache.get(variant)
            if cached is None:
                encoder, content_type = choose_encoder(
                    "application/openmetrics-text; version=1.0.0" if openmetrics else ""
                )
                cached = (encoder(self._registry), content_type)
                self._cache[variant] = cached
        return cached
