"""The PrometheusRule: valid for promtool, unit-tested per alert, and a runbook per alert.

promtool reads plain rule files, so the PrometheusRule's ``spec`` is taken from the rendered
base (what a cluster would get) and written beside a copy of rules_test.yaml.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.podspec import Obj, one
from tests.deploy.tools import REPO, run, tool

UNIT_TESTS = Path(__file__).parent / "rules_test.yaml"
RUNBOOKS = REPO / "docs" / "runbooks"
ALERTS = {
    "SelfcheckRequiredCheckFailed",
    "SelfcheckOriginDetectionNotWorking",
    "SelfcheckResultsStale",
    "SelfcheckSecurityFinding",
    "SelfcheckSidecarAbsent",
}
RUNBOOK_SECTIONS = ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation")


@pytest.fixture(scope="module")
def groups(base_docs: list[Obj]) -> list[dict[str, Any]]:
    spec = one(base_docs, "PrometheusRule")["spec"]
    found: list[dict[str, Any]] = spec["groups"]
    return found


@pytest.fixture(scope="module")
def rules_dir(groups: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("rules")
    (directory / "rules.yml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(UNIT_TESTS, directory / "rules_test.yaml")
    return directory


def _alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules(rules_dir: Path) -> None:
    out = run([tool("promtool"), "check", "rules", str(rules_dir / "rules.yml")]).stdout
    assert "SUCCESS" in out


def test_promtool_unit_tests_pass(rules_dir: Path) -> None:
    out = run([tool("promtool"), "test", "rules", "rules_test.yaml"], cwd=rules_dir)
    assert "SUCCESS" in out.stdout + out.stderr


def test_the_five_alerts_exist(groups: list[dict[str, Any]]) -> None:
    assert {rule["alert"] for rule in _alerts(groups)} == ALERTS


def test_every_alert_is_documented_and_routed(groups: list[dict[str, Any]]) -> None:
    for rule in _alerts(groups):
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"].endswith(f"/docs/runbooks/{name}.md"), name
        assert "for" in rule, f"{name} must not fire on one evaluation"


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_every_alert_has_a_runbook(alert: str) -> None:
    text = (RUNBOOKS / f"{alert}.md").read_text()
    assert text.startswith(f"# {alert}\n")
    for section in RUNBOOK_SECTIONS:
        assert section in text, f"{alert}.md lacks {section}"
    diagnosis = text.split("## Diagnosis", 1)[1].split("## Mitigation", 1)[0]
    assert re.search(r"kubectl -n datadog exec <pod> -c selfcheck -- selfcheck check", diagnosis)


def test_runbooks_are_only_for_alerts() -> None:
    assert {path.stem for path in RUNBOOKS.glob("*.md")} == ALERTS


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else silent).add(check["alertname"])
    assert fired == ALERTS
    assert silent == ALERTS


def test_every_recording_rule_is_unit_tested(groups: list[dict[str, Any]]) -> None:
    records = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    tested = {check["expr"] for case in cases for check in case.get("promql_expr_test", [])}
    assert records and records <= tested
