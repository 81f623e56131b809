"""Run the Datadog Agent's own OpenMetrics check against an endpoint and print what it sent.

This script runs in the datadog-checks-base virtual environment (.ci/ddchecks-venv.sh), never
in the project's: it imports only the Agent's check toolkit and the standard library.
``OpenMetricsBaseCheckV2`` is the class behind the Agent's ``openmetrics`` integration; run
outside the Agent, its submissions land in ``datadog_checks.base.stubs.aggregator``, the
recorder the integrations' own tests assert on. The instance is the autodiscovery
annotation's, with ``%%host%%`` and the port resolved as the Agent would resolve them.

usage: python agent_scrape.py INSTANCE_JSON [RUNS]
  Runs the check RUNS times (default 2), waiting between runs until the endpoint's run
  counters move, so that monotonic counts have a previous value; prints one JSON document:
  {"metrics": [{name, type, value, tags, flush_first_value}], "service_checks": [...],
   "errors": [the message of each failed run]}.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from typing import Any

from datadog_checks.base import OpenMetricsBaseCheckV2  # type: ignore[import-not-found]
from datadog_checks.base.stubs import aggregator  # type: ignore[import-not-found]

TYPE_NAMES = {value: name for name, value in aggregator.METRIC_ENUM_MAP.items()}
COUNTER_LINE = b"selfcheck_check_runs_total"
WAIT_SECONDS = 15.0


def _counters(endpoint: str) -> bytes:
    """The endpoint's run counter lines: they change once the server finished a cycle."""
    with urllib.request.urlopen(endpoint, timeout=5) as response:
        body: bytes = response.read()
    return b"\n".join(line for line in body.splitlines() if line.startswith(COUNTER_LINE))


def _wait_for_a_cycle(endpoint: str) -> None:
    before = _counters(endpoint)
    deadline = time.monotonic() + WAIT_SECONDS
    while _counters(endpoint) == before:
        if time.monotonic() > deadline:
            raise SystemExit(f"the run counters at {endpoint} did not move")
        time.sleep(0.1)


def _recorded() -> dict[str, list[dict[str, Any]]]:
    metrics = [
        {
            "name": stub.name,
            "type": TYPE_NAMES[stub.type],
            "value": stub.value,
            "tags": sorted(stub.tags),
            "flush_first_value": stub.flush_first_value,
        }
        for name in sorted(aggregator.metric_names)
        for stub in aggregator.metrics(name)
    ]
    service_checks = [
        {"name": stub.name, "status": stub.status, "tags": sorted(stub.tags)}
        for name in sorted(aggregator.service_check_names)
        for stub in aggregator.service_checks(name)
    ]
    return {"metrics": metrics, "service_checks": service_checks}


def main(argv: list[str]) -> int:
    instance: dict[str, Any] = json.loads(argv[1])
    runs = int(argv[2]) if len(argv) > 2 else 2
    check = OpenMetricsBaseCheckV2("openmetrics", {}, [instance])
    errors = []
    for run in range(runs):
        if run:
            _wait_for_a_cycle(instance["openmetrics_endpoint"])
        # run() is what the Agent's collector calls: initialisations, then check(); it
        # returns the error as JSON text, empty when the run succeeded.
        error: str = check.run()
        if error:
            errors.append(json.loads(error)[0]["message"])
    json.dump({**_recorded(), "errors": errors}, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
