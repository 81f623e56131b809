"""``selfcheck.fleet.command``: flags checked before any query, each bad one a line and exit 3."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.run import base_env, selfcheck


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


def test_the_sidecar_never_imports_the_fleet_module() -> None:
    code = (
        "import sys, selfcheck.cli, selfcheck.service; selfcheck.cli.build_parser();"
        " print('selfcheck.fleet' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=base_env(), capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
