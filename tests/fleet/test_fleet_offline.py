"""``selfcheck fleet`` where no Prometheus is needed: usage errors, redaction, the layout.

The layout tests feed ``assemble`` the samples a Prometheus would answer (the live tests in
``test_fleet_live.py`` get them from a real one) to reach shapes the live fleet does not
have: node names longer than a column, hundreds of failing rows.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from selfcheck.fleet import Queries, Sample, age, assemble, redact, render
from tests.fleet.conftest import free_port
from tests.support.run import base_env, selfcheck
from tests.support.standins import WedgedListener


def test_unreachable_prometheus_is_one_line_without_the_password() -> None:
    port = free_port()
    run = selfcheck(["fleet", "--prometheus", f"http://ops:s3cret@127.0.0.1:{port}"])
    assert run.code == 3, run
    assert run.stderr == (
        f"selfcheck fleet: cannot reach Prometheus at http://***@127.0.0.1:{port}:"
        " [Errno 111] Connection refused\n"
    ), run.stderr


def test_a_prometheus_that_never_answers_is_a_bounded_wait() -> None:
    with WedgedListener() as wedged:
        url = f"http://127.0.0.1:{wedged.port}"
        run = selfcheck(["fleet", "--prometheus", url, "--timeout", "0.5"], timeout=20)
    assert run.code == 3, run
    assert run.stderr == f"selfcheck fleet: Prometheus at {url} did not answer within 0.5 s\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prometheus", "127.0.0.1:9090"], "--prometheus must be an http(s) URL"),
        (["--check", "Procfs;drop"], "--check: 'Procfs;drop' is not a check id"),
        (["--node-label", "node-name"], "--node-label: 'node-name' is not a label name"),
        (["--timeout", "0"], "--timeout must be between 0 and 300 seconds"),
        (["--bearer-token-file", "/nonexistent/token"], "cannot read --bearer-token-file"),
        (["--limit", "many"], "argument --limit: invalid int value"),
        (["--scrape-interval", "soon"], "--scrape-interval: 'soon' is not a duration"),
        (
            ["--prometheus", "http://u:p@127.0.0.1:1", "--bearer-token-file", "/dev/null"],
            "either basic auth in the URL or --bearer-token-file, not both",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_3(args: list[str], message: str) -> None:
    run = selfcheck(["fleet", *args], {"SELFCHECK_PROMETHEUS_URL": "http://127.0.0.1:1"})
    assert run.code == 3, run
    assert message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_redact_hides_basic_auth_only() -> None:
    assert redact("https://u:p@prom.example:9091/x") == "https://***@prom.example:9091/x"
    assert redact("http://127.0.0.1:9090") == "http://127.0.0.1:9090"


def test_the_sidecar_never_imports_the_fleet_module() -> None:
    code = (
        "import sys, selfcheck.cli, selfcheck.service; selfcheck.cli.build_parser();"
        " print('selfcheck.fleet' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=base_env(), capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


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
