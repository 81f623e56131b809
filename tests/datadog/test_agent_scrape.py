"""The Datadog Agent's own OpenMetrics check scraping a live ``selfcheck serve``.

No Agent binary can run here, but the Agent's ``openmetrics`` integration is Python: the class
``OpenMetricsBaseCheckV2`` from ``datadog-checks-base`` (PyPI, pinned in
.ci/ddchecks-venv.sh, in a virtual environment of its own because of its pins). It is run,
in that environment, by tests/datadog/agent_scrape.py with the instance of the pod's
autodiscovery annotation (k8s/components/selfcheck-sidecar/autodiscovery.yaml), against a
real ``selfcheck serve`` subprocess whose DogStatsD socket is missing (a known required
failure). Its aggregator stub records exactly what the Agent would forward: these tests assert
the names, types, tags and values Datadog would store, and count the custom metric series.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from selfcheck.model import Status
from selfcheck.registry import all_checks
from tests.datadog.expected import HEALTH_SERVICE_CHECK, METRICS, MONITORED, NAMESPACE
from tests.deploy.tools import K8S, missing
from tests.support.run import base_env, stop

pytestmark = pytest.mark.slow

DEFAULT_VENV = Path("/opt/selfcheck-ddchecks")
SCRIPT = Path(__file__).with_name("agent_scrape.py")
ANNOTATION = "ad.datadoghq.com/selfcheck.checks"
AUTODISCOVERY = K8S / "components" / "selfcheck-sidecar" / "autodiscovery.yaml"
FAULTY = "dogstatsd_socket"
# Tags that must never come from selfcheck's labels: the Agent's own (host), those of unified
# service tagging, and the endpoint URL (the pod IP: new series at every pod restart).
RESERVED_TAGS = {"host", "hostname", "service", "version", "env", "endpoint"}

Metric = dict[str, Any]


def agent_python() -> Path:
    venv = Path(os.environ.get("SELFCHECK_DDCHECKS_VENV", DEFAULT_VENV))
    python = venv / "bin" / "python"
    if not python.is_file():
        missing(f"no datadog-checks-base venv at {venv} (create it: .ci/ddchecks-venv.sh)")
    return python


def annotation_instance() -> dict[str, Any]:
    """The one OpenMetrics instance of the pod annotation, as the Agent parses it."""
    patch = yaml.safe_load(AUTODISCOVERY.read_text())
    checks = json.loads(patch["spec"]["template"]["metadata"]["annotations"][ANNOTATION])
    (instance,) = checks["openmetrics"]["instances"]
    assert isinstance(instance, dict)
    return instance


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(port: int, path: str) -> int | None:
    with contextlib.suppress(OSError):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        finally:
            connection.close()
    return None


@contextlib.contextmanager
def faulty_server(tmp: Path) -> Iterator[int]:
    """``selfcheck serve`` with every check, cycling each second, its DogStatsD socket absent."""
    port = free_port()
    env = base_env(
        {
            "SELFCHECK_LISTEN": f"127.0.0.1:{port}",
            "SELFCHECK_INTERVAL": "1",
            "DD_DOGSTATSD_SOCKET": str(tmp / "absent" / "dsd.socket"),
            # audited as the container it stands for (the security check's findings are sent),
            # the machine's own mounts standing for the host's
            "SELFCHECK_CONTAINERIZED": "true",
            "HOST_PROC": "/proc",
            "DD_CONTAINER_CGROUP_ROOT": "/sys/fs/cgroup",
            "HOST_ETC": "/etc",
        }
    )
    log = tmp / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfcheck", "serve"], env=env, stdout=out, stderr=out, cwd="/"
        )
    try:
        deadline = time.monotonic() + 20
        while _status(port, "/startupz") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield port
    finally:
        stop(proc)


def agent_scrape(
    python: Path, instance: dict[str, Any], port: int, runs: int = 2
) -> dict[str, Any]:
    """Runs of the Agent's check, one server cycle apart, on the server at ``port``."""
    endpoint = instance["openmetrics_endpoint"].replace("%%host%%", "127.0.0.1")
    resolved = {**instance, "openmetrics_endpoint": endpoint.replace(":9750/", f":{port}/")}
    result = subprocess.run(
        [str(python), str(SCRIPT), json.dumps(resolved), str(runs)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The annotation's instance, and the lean one docs/datadog.md offers, on one faulty server."""
    python = agent_python()
    instance = annotation_instance()
    with faulty_server(tmp_path_factory.mktemp("ddnative")) as port:
        found = {
            "annotation": agent_scrape(python, instance, port),
            "lean": agent_scrape(python, {**instance, "metrics": list(MONITORED)}, port),
        }
    found["stopped"] = agent_scrape(python, instance, port, runs=1)
    return found


@pytest.fixture(scope="module")
def scraped(scrapes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    assert scrapes["annotation"]["errors"] == []
    return scrapes["annotation"]


def named(scraped: dict[str, Any], name: str, **tags: str) -> list[Metric]:
    wanted = {f"{k}:{v}" for k, v in tags.items()}
    return [m for m in scraped["metrics"] if m["name"] == name and wanted <= set(m["tags"])]


def tag_keys(metric: Metric) -> frozenset[str]:
    return frozenset(tag.partition(":")[0] for tag in metric["tags"])


def test_every_name_type_and_tag_is_the_expected_one(scraped: dict[str, Any]) -> None:
    figure = re.compile(rf"{NAMESPACE}\.({'|'.join(all_checks())})_[a-z0-9_]+")
    seen = set()
    for metric in scraped["metrics"]:
        seen.add(metric["name"])
        if metric["name"] in METRICS:
            kind, keys = METRICS[metric["name"]]
            assert (metric["type"], tag_keys(metric)) == (kind, keys), metric
        else:
            assert figure.fullmatch(metric["name"]), f"neither a family nor a figure: {metric}"
            assert (metric["type"], metric["tags"]) == ("gauge", []), metric
    assert set(METRICS) <= seen, f"never sent: {sorted(set(METRICS) - seen)}"


def test_no_tag_collides_with_the_agents_or_churns(scraped: dict[str, Any]) -> None:
    for metric in scraped["metrics"]:
        assert not tag_keys(metric) & RESERVED_TAGS, metric


def test_every_check_has_a_one_hot_status(scraped: dict[str, Any]) -> None:
    by_check: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for metric in named(scraped, "selfcheck.check_status")[: len(all_checks()) * len(Status)]:
        tags = dict(tag.split(":", 1) for tag in metric["tags"])
        by_check[tags["check"]][tags["status"]] = metric["value"]
    assert set(by_check) == set(all_checks())
    for check, values in by_check.items():
        assert set(values) == {str(s) for s in Status}, check
        assert sorted(values.values()) == [0.0, 0.0, 0.0, 0.0, 1.0], check


def test_the_known_fault_is_what_datadog_stores(scraped: dict[str, Any]) -> None:
    failed = named(scraped, "selfcheck.check_status", check=FAULTY, status="failed")
    assert [m["value"] for m in failed] == [1.0, 1.0]
    assert {m["value"] for m in named(scraped, "selfcheck.check_status", check=FAULTY)} == {
        0.0,
        1.0,
    }
    reasons = named(scraped, "selfcheck.check_reason", check=FAULTY)
    assert [(m["tags"], m["value"]) for m in reasons] == [
        ([f"check:{FAULTY}", "reason:enoent"], 1.0)
    ] * 2
    assert [m["value"] for m in named(scraped, "selfcheck.check_success", check=FAULTY)] == [0, 0]
    assert [m["value"] for m in named(scraped, "selfcheck.check_required", check=FAULTY)] == [1, 1]
    assert [m["value"] for m in named(scraped, "selfcheck.ready")] == [0.0, 0.0]
    ok = named(scraped, "selfcheck.check_status", check="procfs", status="ok")
    assert [m["value"] for m in ok] == [1.0, 1.0]


def test_counters_are_monotonic_counts_that_grow(scraped: dict[str, Any]) -> None:
    """The Agent sends the difference between runs: the first run only sets the baseline."""
    for name, check in (
        ("selfcheck.check_failures.count", FAULTY),
        ("selfcheck.check_runs.count", FAULTY),
        ("selfcheck.check_runs.count", "procfs"),
    ):
        first, second = named(scraped, name, check=check)
        assert first["type"] == second["type"] == "monotonic_count"
        assert first["flush_first_value"] is False
        assert second["value"] > first["value"] >= 1, (name, check)
    assert [m["value"] for m in named(scraped, "selfcheck.check_failures.count", check="procfs")]
    assert {
        m["value"] for m in named(scraped, "selfcheck.check_failures.count", check="procfs")
    } == {0.0}


def test_the_scrape_reports_its_own_health(scrapes: dict[str, dict[str, Any]]) -> None:
    """OK while /metrics answers; CRITICAL (2) once the sidecar is gone (SidecarAbsent)."""
    checks = scrapes["annotation"]["service_checks"]
    assert [(c["name"], c["status"]) for c in checks] == [(HEALTH_SERVICE_CHECK, 0)] * 2
    stopped = scrapes["stopped"]
    assert [(c["name"], c["status"]) for c in stopped["service_checks"]] == [
        (HEALTH_SERVICE_CHECK, 2)
    ]
    assert stopped["metrics"] == [] and len(stopped["errors"]) == 1


def test_custom_metric_series_per_node(scraped: dict[str, Any]) -> None:
    """Distinct metric and tag combinations of one node (before the Agent's host tag): 13
    per check (``check_view`` is one), plus the last success time of the checks that had one,
    one per declared figure and active finding at most, and four fixed series
    (docs/datadog.md)."""
    series = {(m["name"], tuple(m["tags"])) for m in scraped["metrics"]}
    checks = all_checks()
    findings = {s for s in series if s[0] == "selfcheck.finding"}
    per_check = {s for s in series if any(t.startswith("check:") for t in s[1])} - findings
    assert len({s for s in per_check if s[0] == "selfcheck.check_status"}) == len(checks) * 5
    assert len({s for s in per_check if s[0] == "selfcheck.check_reason"}) == len(checks)
    last_success = {s for s in per_check if s[0].endswith("last_success_timestamp_seconds")}
    assert len({s for s in per_check if s[0] == "selfcheck.check_view"}) == len(checks)
    assert len(per_check) == len(checks) * 13 + len(last_success)
    keys = {
        tuple(dict(t.split(":", 1) for t in s[1])[k] for k in ("check", "finding"))
        for s in findings
    }
    assert findings and len(keys) == len(findings)
    assert {check for check, _ in keys} <= set(checks)
    fixed = {"selfcheck.ready", "selfcheck.build_info", "selfcheck.node_info",
             "selfcheck.security_pod_security_level"}  # fmt: skip
    assert {s[0] for s in series if s[0] in fixed} == fixed
    figures = series - per_check - findings - {s for s in series if s[0] in fixed}
    assert len(figures) <= sum(len(spec.figures) for spec in checks.values())


def test_the_lean_instance_sends_what_the_monitors_need(scrapes: dict[str, Any]) -> None:
    assert scrapes["lean"]["errors"] == []
    lean = scrapes["lean"]["metrics"]
    assert {m["name"] for m in lean} == set(MONITORED.values())
    for metric in lean:
        assert (metric["type"], tag_keys(metric)) == METRICS[metric["name"]], metric
    series = {(m["name"], tuple(m["tags"])) for m in lean}
    findings = {s for s in series if s[0] == "selfcheck.finding"}
    assert len(series) - len(findings) == len(all_checks()) * (len(Status) + 3) + 1
