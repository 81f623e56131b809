"""The fleet view against a real Prometheus scraping real sidecars (``conftest.py``).

What must hold: the PrometheusRule fires exactly for the faulty nodes, its recording rules
give the fleet's ratios, and ``selfcheck fleet`` names exactly those nodes with their
reasons, the missing node, and the fleet's exit code.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.fleet.conftest import LiveFleet, wait_until
from tests.support.run import Run, selfcheck

pytestmark = [pytest.mark.root, pytest.mark.containerd, pytest.mark.slow]

# (alertname, node, check or finding, severity): what each fault must fire, and nothing else.
EXPECTED_ALERTS = {
    ("SelfcheckRequiredCheckFailed", "node-b", "dogstatsd_socket", "critical"),
    ("SelfcheckRequiredCheckFailed", "node-c", "procfs", "critical"),
    ("SelfcheckRequiredCheckFailed", "node-d", "procfs", "critical"),
    ("SelfcheckOriginDetectionNotWorking", "node-c", "", "critical"),
    ("SelfcheckSecurityFinding", "node-e", "ptrace_with_host_pid", "warning"),
    ("SelfcheckSecurityFinding", "node-e", "sys_admin", "warning"),
}
# (node, check, status, reason, required)
EXPECTED_FAILING = {
    ("node-b", "dogstatsd_socket", "failed", "enoent", True),
    ("node-c", "procfs", "failed", "enoent", True),
    ("node-c", "origin_detection", "failed", "procfs_missing", True),
    ("node-d", "procfs", "failed", "not_host", True),
    ("node-e", "security", "degraded", "critical_findings", False),
}


def alerts(fleet: LiveFleet, state: str) -> set[tuple[str, str, str, str]]:
    return {
        (
            a["labels"]["alertname"],
            a["labels"].get("node", ""),
            a["labels"].get("check", a["labels"].get("finding", "")),
            a["labels"]["severity"],
        )
        for a in fleet.api("/api/v1/alerts")["alerts"]
        if a["state"] == state
    }


def fleet_cli(fleet: LiveFleet, *args: str, env: dict[str, str] | None = None) -> Run:
    """The CLI over TLS with basic auth in the URL; the password must never be printed."""
    run = selfcheck(
        ["fleet", "--prometheus", fleet.auth_url, "--ca-file", str(fleet.ca),
         "--scrape-interval", "1s", *args],
        env, timeout=30,
    )  # fmt: skip
    assert fleet.password not in run.stdout + run.stderr
    return run


def failing(run: Run) -> set[tuple[str, str, str, str, bool]]:
    return {
        (f["node"], f["check"], f["status"], f["reason"], f["required"])
        for f in run.json["failing"]
    }


def counts(run: Run, check: str) -> dict[str, Any]:
    (row,) = [row for row in run.json["checks"] if row["check"] == check]
    return dict(row)


def test_alerts_fire_for_exactly_the_faulty_nodes(live_fleet: LiveFleet) -> None:
    wait_until(
        "the expected alerts firing",
        lambda: alerts(live_fleet, "firing") == EXPECTED_ALERTS,
        30,
        lambda: f"firing: {alerts(live_fleet, 'firing')}\n{live_fleet.log()}",
    )
    assert alerts(live_fleet, "pending") == set()
    firing = live_fleet.api("/api/v1/alerts")["alerts"]
    reasons = {
        a["labels"]["node"]: a["annotations"]["description"]
        for a in firing
        if a["labels"]["alertname"] == "SelfcheckRequiredCheckFailed"
    }
    assert "(reason: enoent)" in reasons["node-b"]
    assert "(reason: not_host)" in reasons["node-d"]


def test_recording_rules_give_the_fleet_ratios(live_fleet: LiveFleet) -> None:
    def ratios() -> dict[str, float]:
        found = {
            s["metric"].get("check", s["metric"]["__name__"]): float(s["value"][1])
            for s in live_fleet.query('{__name__=~".+:.+", __name__!~".+skipped.+"}')
        }
        # a check every node skips has no ok ratio (no node runs it): waited for by name
        wanted = {":selfcheck_nodes:count", ":selfcheck_ready:ratio", "procfs", "security"}
        return found if wanted <= set(found) else {}

    found = wait_until("the recording rules", ratios, 20, live_fleet.log)
    assert found[":selfcheck_nodes:count"] == 5  # node-f is down: no selfcheck_ready
    assert found[":selfcheck_ready:ratio"] == pytest.approx(2 / 5)  # node-a and node-e
    assert found["procfs"] == pytest.approx(3 / 5)
    assert found["dogstatsd_socket"] == pytest.approx(4 / 5)
    # of the nodes that run it: node-e skips it, node-c fails it
    assert found["origin_detection"] == pytest.approx(3 / 4)
    assert found["cgroups"] == found["runtime_socket"] == found["passwd"] == 1
    assert found["security"] == 0  # skipped on four nodes, degraded on node-e
    skipped = {
        s["metric"]["check"]: float(s["value"][1])
        for s in live_fleet.query("check:selfcheck_check_skipped:ratio")
    }
    assert skipped["security"] == pytest.approx(4 / 5)
    assert skipped["origin_detection"] == pytest.approx(1 / 5)
    assert skipped["procfs"] == 0


def test_fleet_names_exactly_the_failing_and_missing_nodes(live_fleet: LiveFleet) -> None:
    began = time.time() - 120  # generous: the fixture started the nodes well within this
    run = fleet_cli(live_fleet, "--json")
    assert run.code == 2, run
    body = run.json
    assert body["schema"] == "selfcheck.fleet/v1"
    assert (body["nodes"], body["reporting"]) == (6, 5)
    assert failing(run) == EXPECTED_FAILING
    assert body["missing"] == [{"node": "node-f", "why": "scrape failing (up == 0)"}]
    assert counts(run, "procfs") == {
        "check": "procfs", "ok": 3, "degraded": 0, "failed": 2, "error": 0, "skipped": 0,
        "missing": 1,
    }  # fmt: skip
    assert counts(run, "security")["degraded"] == 1
    assert counts(run, "security")["skipped"] == 4
    for row in body["failing"]:
        assert row["namespace"] == "datadog" and row["pod"].startswith("datadog-")
        # never ok since the sidecar started: the reason's scrapes times the interval
        assert row["since_source"] == "samples", row
        assert began <= row["since"] <= body["evaluated_at"] - 1, row


def test_fleet_report_in_words(live_fleet: LiveFleet) -> None:
    run = fleet_cli(live_fleet)
    assert run.code == 2, run
    lines = run.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines), run.stdout
    assert lines[0].endswith("6 nodes, 5 reporting, 1 missing")
    rows = [line.split() for line in lines if line.startswith("node-")]
    assert ["node-b", "dogstatsd_socket", "FAILED", "required", "enoent"] in [
        row[:5] for row in rows
    ]
    assert ["node-f", "scrape", "failing", "(up", "==", "0)"] in rows
    assert "NOT READY: 3 node(s) fail a required check (exit 2)." in lines


def test_check_and_selector_narrow_the_view(live_fleet: LiveFleet) -> None:
    one = fleet_cli(live_fleet, "--check", "dogstatsd_socket", "--json")
    assert one.code == 2, one
    assert failing(one) == {("node-b", "dogstatsd_socket", "failed", "enoent", True)}
    assert [row["check"] for row in one.json["checks"]] == ["dogstatsd_socket"]
    # optional findings and a missing node: a warning, not critical
    security = fleet_cli(live_fleet, "--check", "security", "--json")
    assert security.code == 1, security
    # the PodMonitor's nodepool relabelling: node-a..c are "default", all up
    pool = fleet_cli(live_fleet, "--selector", 'nodepool="default"', "--check", "cgroups")
    assert pool.code == 0, pool
    assert "3 nodes, 3 reporting, 0 missing" in pool.stdout
    by_env = fleet_cli(
        live_fleet,
        "--selector", 'nodepool="gpu"', "--json",
        env={"SELFCHECK_PROMETHEUS_URL": "http://127.0.0.1:1"},  # the flag wins
    )  # fmt: skip
    assert {f["node"] for f in by_env.json["failing"]} == {"node-d", "node-e"}


def test_prometheus_url_from_the_environment(live_fleet: LiveFleet) -> None:
    run = selfcheck(
        ["fleet", "--check", "procfs", "--json"],
        {"SELFCHECK_PROMETHEUS_URL": live_fleet.auth_url, "REQUESTS_CA_BUNDLE": str(live_fleet.ca)},
    )
    assert run.code == 2, run
    assert {f["node"] for f in run.json["failing"]} == {"node-c", "node-d"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--selector", 'cluster=~"("'], "refused the query (HTTP 400, bad_data)"),
        (["--selector", 'cluster="other"'], 'no selfcheck series matching {cluster="other"}'),
        (["--check", "no_such_check"], "unknown check 'no_such_check': no node reports it"),
    ],
)  # fmt: skip
def test_wrong_questions_to_a_real_prometheus_are_exit_3(
    live_fleet: LiveFleet, args: list[str], message: str
) -> None:
    run = fleet_cli(live_fleet, *args)
    assert run.code == 3, run
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1, run.stderr
    assert message in run.stderr, run.stderr
    assert live_fleet.url.replace("https://", "https://***@") in run.stderr or "check" in message


def test_wrong_password_and_unknown_certificate_are_exit_3(live_fleet: LiveFleet) -> None:
    shown = live_fleet.url.replace("https://", "https://***@")
    wrong = live_fleet.auth_url.replace(live_fleet.password, "not-the-password")
    run = selfcheck(["fleet", "--prometheus", wrong, "--ca-file", str(live_fleet.ca)])
    assert run.code == 3, run
    assert (
        run.stderr == f"selfcheck fleet: Prometheus at {shown} refused the credentials (HTTP 401)\n"
    )
    untrusted = selfcheck(["fleet", "--prometheus", live_fleet.auth_url])
    assert untrusted.code == 3, untrusted
    assert untrusted.stderr.startswith(
        f"selfcheck fleet: TLS error talking to Prometheus at {shown}:"
    )
    assert "certificate verify failed" in untrusted.stderr
    assert untrusted.stderr.count("\n") == 1 and live_fleet.password not in untrusted.stderr


def test_a_sidecar_is_not_a_prometheus(live_fleet: LiveFleet) -> None:
    node = live_fleet.nodes["node-a"]
    url = f"http://127.0.0.1:{node.port}"
    run = selfcheck(["fleet", "--prometheus", url])
    assert run.code == 3, run
    assert run.stderr == (
        f"selfcheck fleet: {url} is not a Prometheus API"
        " (HTTP 405, text/plain answer to /api/v1/query)\n"
    ), run.stderr
