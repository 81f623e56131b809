"""The Datadog monitors (k8s/monitoring/datadog-monitors.json) mirror the Prometheus alerts.

(The service-check monitors on selfcheck's own service checks mirror no rule: they have no
``prometheus_alert`` tag and are tested in test_service_check_monitors.py.)

One monitor per alerting rule of k8s/monitoring/prometheusrule.yaml, with its severity, its
`for:` as the evaluation window and its runbook; each query uses only the metric names, tag
keys and tag values that the Agent's own scraper was shown to send (tests/datadog/expected.py,
proven by test_agent_scrape.py), grouped by tags the scrape sends or the Agent adds (`host`).
Each definition is read by the official Datadog API client's own Monitor model, which checks
every field's type and the monitor type against the API's schema.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from datadog_api_client import Configuration
from datadog_api_client.model_utils import validate_and_convert_types
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.monitor_options import MonitorOptions

from selfcheck.registry import all_checks
from tests.datadog.expected import (
    AGENT_TAGS,
    CLOSED_TAG_VALUES,
    HEALTH_SERVICE_CHECK,
    METRICS,
    MONITORED,
)
from tests.deploy.tools import K8S

MONITORS = K8S / "monitoring" / "datadog-monitors.json"
RULES = K8S / "monitoring" / "prometheusrule.yaml"
# SelfcheckResultsStale waits 300 s of age in its expression before its `for:` starts.
EXTRA_MINUTES = {"SelfcheckResultsStale": 5}

TERM = re.compile(
    r"(?:avg|sum|min|max):(?P<metric>[a-z_.]+)\{(?P<filter>[^}]*)\}(?: by \{(?P<by>[^}]*)\})?"
)
FRAME = re.compile(
    r"(?:avg|sum|min|max)\(last_(?P<minutes>\d+)m\):(?P<body>.+?)\s*(?:>=|<=|>|<)\s*\d+"
)
ARITHMETIC = re.compile(r"[\s()+*\-\d.]*")
SERVICE_CHECK = re.compile(
    r'"(?P<name>[a-z_.]+)"\.over\("\*"\)\.by\("(?P<by>\w+)"\)\.last\(\d+\)\.count_by_status\(\)'
)

Obj = dict[str, Any]


def all_monitors() -> list[Obj]:
    loaded: list[Obj] = json.loads(MONITORS.read_text())
    return loaded


def monitors() -> list[Obj]:
    """The monitors that mirror an alerting rule."""
    return [m for m in all_monitors() if optional_tag(m, "prometheus_alert")]


def alerting_rules() -> list[Obj]:
    spec = yaml.safe_load(RULES.read_text())["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"] if "alert" in rule]


def tag(monitor: Obj, key: str) -> str:
    values: list[str] = [t.split(":", 1)[1] for t in monitor["tags"] if t.startswith(f"{key}:")]
    (value,) = values
    return value


def minutes(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([mh])", duration).groups()  # type: ignore[union-attr]
    return int(number) * (60 if unit == "h" else 1)


def optional_tag(monitor: Obj, key: str) -> str:
    return next((t.split(":", 1)[1] for t in monitor["tags"] if t.startswith(f"{key}:")), "")


def monitor_key(monitor: Obj) -> tuple[str, str, str]:
    """Alert name, severity and scope: one rule may have several severities or scopes."""
    return (
        tag(monitor, "prometheus_alert"),
        tag(monitor, "severity"),
        optional_tag(monitor, "scope"),
    )


def rule_key(rule: Obj) -> tuple[str, str, str]:
    return rule["alert"], rule["labels"]["severity"], rule["labels"].get("scope", "")


def rule_for(monitor: Obj) -> Obj:
    (rule,) = [r for r in alerting_rules() if rule_key(r) == monitor_key(monitor)]
    return rule


def test_one_monitor_per_alerting_rule() -> None:
    rules = sorted(rule_key(r) for r in alerting_rules())
    mirrored = sorted(monitor_key(m) for m in monitors())
    assert mirrored == rules


@pytest.mark.parametrize("monitor", monitors(), ids=lambda m: tag(m, "prometheus_alert"))
def test_the_api_clients_model_accepts_it(monitor: Obj) -> None:
    assert_valid(monitor)


def assert_valid(monitor: Obj) -> None:
    """The official API client's own model reads every field, with nothing left unparsed."""
    configuration = Configuration()  # type: ignore[no-untyped-call]
    parsed = validate_and_convert_types(  # type: ignore[no-untyped-call]
        monitor, (Monitor,), ["monitor"], True, True, configuration
    )
    assert isinstance(parsed, Monitor)
    assert not parsed._unparsed, "a field value outside the API's schema"
    assert set(monitor["options"]) <= set(MonitorOptions.attribute_map)


@pytest.mark.parametrize("monitor", monitors(), ids=lambda m: tag(m, "prometheus_alert"))
def test_window_and_runbook_follow_the_rule(monitor: Obj) -> None:
    rule = rule_for(monitor)
    wanted = minutes(rule["for"]) + EXTRA_MINUTES.get(rule["alert"], 0)
    if monitor["type"] == "service check":
        assert monitor["options"]["notify_no_data"] is True
        assert monitor["options"]["no_data_timeframe"] == wanted
    else:
        frame = FRAME.fullmatch(monitor["query"])
        assert frame is not None, monitor["query"]
        assert int(frame["minutes"]) == wanted
    assert rule["annotations"]["runbook_url"] in monitor["message"]


def _check_tag_filter(metric: str, item: str) -> None:
    key, _, value = item.removeprefix("!").partition(":")
    assert key in METRICS[metric][1], f"{metric} has no tag {key}"
    allowed = set(all_checks()) if key == "check" else CLOSED_TAG_VALUES.get(key, frozenset())
    assert value in allowed, f"{key}:{value} is never sent"


def _check_metric_query(query: str) -> None:
    frame = FRAME.fullmatch(query)
    assert frame is not None, query
    terms = list(TERM.finditer(frame["body"]))
    assert terms, query
    assert ARITHMETIC.fullmatch(TERM.sub("", frame["body"])), f"unparsed text in {query}"
    for term in terms:
        metric = term["metric"]
        assert metric in METRICS, f"{metric} is not a name the Agent's check sends"
        assert metric in MONITORED.values(), f"{metric} is missing from the lean instance"
        if term["filter"] != "*":
            for item in term["filter"].split(","):
                _check_tag_filter(metric, item)
        group = set((term["by"] or "").split(",")) - {""}
        assert group <= METRICS[metric][1] | AGENT_TAGS, f"{metric} cannot be grouped by {group}"


@pytest.mark.parametrize("monitor", monitors(), ids=lambda m: tag(m, "prometheus_alert"))
def test_queries_use_only_what_the_scraper_sends(monitor: Obj) -> None:
    if monitor["type"] == "service check":
        found = SERVICE_CHECK.fullmatch(monitor["query"])
        assert found is not None, monitor["query"]
        assert found["name"] == HEALTH_SERVICE_CHECK
        assert found["by"] in AGENT_TAGS
    else:
        assert monitor["type"] == "query alert"
        _check_metric_query(monitor["query"])
