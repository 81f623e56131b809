"""The service-check monitors: one per required check, on the service checks selfcheck sends.

Required means required in the project's own Agent DaemonSet (k8s/daemonset.yaml, whose env the
sidecar shares), decided by selfcheck's own rule. Each monitor is read by the official
``datadog-api-client`` Monitor model like the metric monitors, alerts on CRITICAL and WARNING
runs of ``selfcheck.<check>`` grouped by ``host``, notifies on no data (a node whose DogStatsD
path or sidecar is gone), renotifies, and links a runbook that exists.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from selfcheck.config import load
from selfcheck.registry import all_checks, known_ids, required_ids
from selfcheck.servicechecks import DEFAULT_PREFIX
from tests.datadog.test_monitors import all_monitors, assert_valid, optional_tag
from tests.deploy.podspec import env_values, load_all, one, pod_spec
from tests.deploy.tools import K8S, REPO

QUERY = re.compile(
    r'"(?P<name>[a-z_.]+)"\.over\("\*"\)\.by\("host"\)\.last\((?P<last>\d+)\)\.count_by_status\(\)'
)
LINK = re.compile(r"https://github\.com/selfcheck/selfcheck/blob/main/(?P<path>\S+)")

Obj = dict[str, Any]


def service_check_monitors() -> list[Obj]:
    return [m for m in all_monitors() if optional_tag(m, "service_check")]


def required_in_the_daemonset() -> set[str]:
    """The checks required under the Agent's env of k8s/daemonset.yaml, running as root."""
    spec = pod_spec(one(load_all((K8S / "daemonset.yaml").read_text()), "DaemonSet"))
    config = load(
        known_ids(),
        env_values(spec, "agent"),
        euid=lambda: spec.get("securityContext", {}).get("runAsUser", 0),
        containerized=lambda _env: (True, "a pod"),
    )
    return set(required_ids(config, all_checks()))


def test_one_service_check_monitor_per_required_check() -> None:
    monitored = [optional_tag(m, "check") for m in service_check_monitors()]
    assert sorted(monitored) == sorted(required_in_the_daemonset())
    assert {"procfs", "cgroups", "runtime_socket", "dogstatsd_socket"} <= set(monitored)


@pytest.mark.parametrize("monitor", service_check_monitors(), ids=lambda m: m["tags"][1])
def test_the_api_clients_model_accepts_it(monitor: Obj) -> None:
    assert_valid(monitor)
    assert monitor["type"] == "service check"


@pytest.mark.parametrize("monitor", service_check_monitors(), ids=lambda m: m["tags"][1])
def test_it_alerts_on_the_checks_own_service_check_by_host(monitor: Obj) -> None:
    found = QUERY.fullmatch(monitor["query"])
    assert found is not None, monitor["query"]
    check = optional_tag(monitor, "check")
    assert found["name"] == optional_tag(monitor, "service_check") == f"{DEFAULT_PREFIX}.{check}"
    thresholds = monitor["options"]["thresholds"]
    assert int(found["last"]) >= max(thresholds.values())
    assert set(thresholds) == {"critical", "warning", "ok"}


@pytest.mark.parametrize("monitor", service_check_monitors(), ids=lambda m: m["tags"][1])
def test_no_data_renotify_and_runbook(monitor: Obj) -> None:
    options = monitor["options"]
    assert options["notify_no_data"] is True
    assert options["no_data_timeframe"] >= 2
    assert options["renotify_interval"] > 0
    assert "no data" in options["renotify_statuses"]
    links = [m["path"] for m in LINK.finditer(monitor["message"])]
    assert any(p.startswith("docs/runbooks/") for p in links), monitor["message"]
    for path in links:
        assert (REPO / path).is_file(), path
    assert "{{#is_no_data}}" in monitor["message"]
    assert f"selfcheck check --only {optional_tag(monitor, 'check')}" in monitor["message"]


def test_the_reference_page_documents_the_status_mapping() -> None:
    page = (REPO / "docs" / "datadog.md").read_text()
    for words in ("SELFCHECK_SERVICE_CHECKS", "SELFCHECK_SERVICE_CHECK_PREFIX", "CRITICAL"):
        assert words in page
