"""``selfcheck.fleet.view``: statuses, required-ness, since and the exit code from the answers."""

from __future__ import annotations

from selfcheck.fleet.client import Sample
from selfcheck.fleet.queries import Queries
from selfcheck.fleet.view import assemble


def _sample(value: float, **labels: str) -> Sample:
    return Sample(labels, value)


def test_status_required_and_since_from_the_values() -> None:
    at = 1_800_000_000.0
    labels = {"node": "n", "namespace": "d", "pod": "p"}
    answers = {
        "counts": [],
        "failing": [
            _sample(0, check="os_release", reason="enoent", **labels),  # optional failed
            _sample(3, check="passwd", reason="low_uid_coverage", **labels),  # degraded, req.
            _sample(1, check="procfs", reason="exception", **labels),  # error, required
        ],
        "samples": [_sample(2000, check="passwd", reason="low_uid_coverage", **labels)],
        "last_success": [_sample(at - 90, check="procfs", **labels)],
        "reporting": [_sample(1)],
        "missing_nodes": [],
    }
    view = assemble("u", at, Queries(), answers)
    got = {(f.check, f.status, f.required, f.since_source, f.since) for f in view.failing}
    assert got == {
        ("os_release", "failed", False, "unknown", None),
        ("passwd", "degraded", True, "window", at - 6 * 3600),
        ("procfs", "error", True, "last_success", at - 90),
    }
    assert view.failing[0].check == "procfs"  # required failures first
    assert view.exit_code == 2


def test_exit_code_over_the_fleet() -> None:
    at = 1_800_000_000.0
    empty: dict[str, list[Sample]] = {
        "counts": [_sample(3, check="procfs", reason="ok")],
        "failing": [],
        "samples": [],
        "last_success": [],
        "reporting": [_sample(3)],
        "missing_nodes": [],
    }
    assert assemble("u", at, Queries(), empty).exit_code == 0
    optional = {**empty, "failing": [_sample(0, node="n", check="os_release", reason="enoent")]}
    assert assemble("u", at, Queries(), optional).exit_code == 1
    no_result = {**empty, "reporting": [_sample(4)]}  # one node without a procfs result
    assert assemble("u", at, Queries(), no_result).exit_code == 1
    all_down = {**empty, "counts": [], "reporting": [], "missing_nodes": [_sample(0, node="n")]}
    assert assemble("u", at, Queries(), all_down).exit_code == 1
    required = {**empty, "failing": [_sample(1, node="n", check="procfs", reason="timeout")]}
    assert assemble("u", at, Queries(), required).exit_code == 2
