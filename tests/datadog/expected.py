"""What Datadog stores from selfcheck's /metrics: names, types and tag keys.

The single list both Datadog tests share. test_agent_scrape.py proves it against the Agent's
real OpenMetrics check scraping a live ``selfcheck serve`` (every name here is observed with
exactly this type and these tag keys, and nothing else is sent but the per-check figures);
test_monitors.py allows the monitor definitions to use only these names and tags. Names
follow the check's rules: ``namespace.`` + the family name without ``raw_metric_prefix``,
counters as ``<name>.count`` monotonic counts (``_total`` dropped), info families as gauges.
"""

from __future__ import annotations

from types import MappingProxyType

from selfcheck.model import Reason, Severity, Status

NAMESPACE = "selfcheck"

# name -> (Datadog type, tag keys)
METRICS = MappingProxyType(
    {
        "selfcheck.check_status": ("gauge", frozenset({"check", "status"})),
        "selfcheck.check_success": ("gauge", frozenset({"check"})),
        "selfcheck.check_required": ("gauge", frozenset({"check"})),
        "selfcheck.check_reason": ("gauge", frozenset({"check", "reason"})),
        "selfcheck.check_view": ("gauge", frozenset({"check", "view"})),
        "selfcheck.check_duration_seconds": ("gauge", frozenset({"check"})),
        "selfcheck.check_last_run_timestamp_seconds": ("gauge", frozenset({"check"})),
        "selfcheck.check_last_success_timestamp_seconds": ("gauge", frozenset({"check"})),
        "selfcheck.check_runs.count": ("monotonic_count", frozenset({"check"})),
        "selfcheck.check_failures.count": ("monotonic_count", frozenset({"check"})),
        "selfcheck.ready": ("gauge", frozenset()),
        "selfcheck.build_info": ("gauge", frozenset({"selfcheck_version", "python_version"})),
        "selfcheck.node_info": (
            "gauge",
            frozenset(
                {"os_id", "os_version_id", "kernel", "cgroup_version", "runtime", "runtime_version"}
            ),
        ),
        "selfcheck.finding": ("gauge", frozenset({"check", "finding", "severity"})),
        "selfcheck.security_pod_security_level": ("gauge", frozenset({"level"})),
    }
)

# The service check the OpenMetrics check sends on every run (OK while /metrics answers).
HEALTH_SERVICE_CHECK = "selfcheck.openmetrics.health"

# Tag values from selfcheck's closed sets, for values a scrape of one node need not show
# (a reason or a finding that is not current there).
CLOSED_TAG_VALUES = MappingProxyType(
    {
        "status": frozenset(str(s) for s in Status),
        "reason": frozenset(str(r) for r in Reason),
        "severity": frozenset(str(s) for s in Severity),
        "view": frozenset({"agent", "own"}),
    }
)

# Tags the Agent itself puts on every metric of a check, which no scrape stub shows.
AGENT_TAGS = frozenset({"host"})

# The families the monitors (k8s/monitoring/datadog-monitors.json) use, as the instance's
# `metrics` option names them (after raw_metric_prefix) and as Datadog then stores them: the
# lean instance docs/datadog.md offers for fleets that pay per custom metric.
MONITORED = MappingProxyType(
    {
        "check_status": "selfcheck.check_status",
        "check_reason": "selfcheck.check_reason",
        "check_required": "selfcheck.check_required",
        "check_runs": "selfcheck.check_runs.count",
        "ready": "selfcheck.ready",
        "finding": "selfcheck.finding",
    }
)
