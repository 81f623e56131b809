"""``selfcheck.fleet.render``: the report within 100 columns, whatever the fleet's shape.

The layout tests feed ``assemble`` the samples a Prometheus would answer (the live tests in
``test_fleet_live.py`` get them from a real one) to reach shapes the live fleet does not
have: node names longer than a column, hundreds of failing rows.
"""

from __future__ import annotations

from selfcheck.fleet.client import Sample
from selfcheck.fleet.queries import Queries
from selfcheck.fleet.render import age, render
from selfcheck.fleet.view import assemble


def _sample(value: float, **labels: str) -> Sample:
    return Sample(labels, value)


def test_long_node_names_and_many_rows_stay_within_100_columns() -> None:
    at = 1_800_000_000.0
    long = "gke-production-europe-west4-default-pool-1a2b3c4d-x9z8"
    target = {"namespace": "datadog", "pod": "datadog-abcde", "check": "origin_detection"}
    bad = [{"node": f"{long}-{i}", "reason": "not_host_pid", **target} for i in range(150)]
    answers = {
        "counts": [_sample(4849, check="origin_detection", reason="ok")],
        "failing": [_sample(1, **labels) for labels in bad],  # required, not a success
        "samples": [_sample(242, **labels) for labels in bad],  # 2 h 01 min at 30 s
        "last_success": [],
        "reporting": [_sample(5000)],
        "missing_nodes": [_sample(-1, node="node-gone")],
    }
    view = assemble("http://prom:9090", at, Queries(), answers)
    text = render(view, limit=100)
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert f"{long}-0" in lines  # too long for the column: a line of its own, never cut
    assert "... and 50 more (--limit 0 or --json)" in lines
    assert view.exit_code == 2
    first = view.failing[0]
    assert (first.status, first.required, first.since_source) == ("failed", True, "samples")
    assert age(at - first.since) == "2h01m"  # type: ignore[operator]
    assert view.counts["origin_detection"]["failed"] == 150
    assert view.counts["origin_detection"]["missing"] == 1 + 1  # node-gone; one without result
    assert "node-gone" in text and "no target any more" in text
