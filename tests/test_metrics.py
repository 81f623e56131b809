"""The exposition: every check from the first scrape, counters per run, closed label sets."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from selfcheck.config import load
from selfcheck.metrics import Exposition, SnapshotCollector
from selfcheck.model import Finding, Outcome, Reason, Result, Severity, Snapshot, Status, ok
from selfcheck.registry import all_checks
from selfcheck.runner import Runner
from tests.support.fake_checks import failing, passing, spec

IDS = frozenset({"fine", "broken"})


def _exposition(runner: Runner) -> Exposition:
    def snap() -> Snapshot:
        return runner.snapshot

    collector = SnapshotCollector(snap, runner.checks, lambda s: s.is_ready(runner.clock(), 100))
    return Exposition(collector, snap)


def _runner() -> Runner:
    return Runner(load(IDS, {}), {"fine": passing(), "broken": failing()})


def test_every_check_is_exported_before_the_first_cycle() -> None:
    text = _exposition(_runner()).render()[0].decode()
    for cid in ("fine", "broken"):
        assert f'selfcheck_check_required{{check="{cid}"}} 1.0' in text
        assert f'selfcheck_check_runs_total{{check="{cid}"}} 0.0' in text
        assert f'selfcheck_check_status{{check="{cid}",status="ok"}} 0.0' in text
    assert "selfcheck_ready 0.0" in text


def test_counters_count_runs_not_scrapes() -> None:
    runner = _runner()
    exposition = _exposition(runner)
    for _ in range(3):
        runner.run_cycle()
    for _ in range(10):
        text = exposition.render()[0].decode()
    assert 'selfcheck_check_runs_total{check="fine"} 3.0' in text
    assert 'selfcheck_check_failures_total{check="broken"} 3.0' in text
    assert 'selfcheck_check_failures_total{check="fine"} 0.0' in text
    assert 'selfcheck_check_reason{check="broken",reason="io_error"} 1.0' in text
    assert 'selfcheck_check_success{check="fine"} 1.0' in text
    assert "selfcheck_fine_answer 42.0" in text


def test_rendering_is_cached_per_snapshot() -> None:
    runner = _runner()
    exposition = _exposition(runner)
    runner.run_cycle()
    first = exposition.render()[0]
    assert exposition.render()[0] is first
    runner.run_cycle()
    assert exposition.render()[0] is not first


def test_labels_come_from_closed_sets_on_the_real_checks() -> None:
    """Run the real checks here, parse every label of the exposition, and lint it with promtool."""
    from prometheus_client.parser import text_string_to_metric_families

    checks = all_checks()
    assert list(checks) == [
        "procfs",
        "cgroups",
        "os_release",
        "passwd",
        "runtime_socket",
        "dogstatsd_socket",
        "dogstatsd_udp",
        "apm_socket",
        "origin_detection",
        "pod_logs",
        "agent_health",
        "security",
        "agent_container",
    ]
    runner = Runner(load(frozenset(checks), {}), checks)
    runner.run_cycle()
    body = _exposition(runner).render()[0]
    closed = {
        "check": set(checks),
        "status": {str(s) for s in Status},
        "reason": {str(r) for r in Reason},
        "finding": set().union(*(spec.findings for spec in checks.values())),
        "severity": {"info", "warning", "critical"},
        "level": {"privileged", "baseline", "restricted"},
        "view": {"agent", "own"},
    }
    free_text = {"version", "python_version", "os_id", "os_version_id", "kernel"}
    free_text |= {"cgroup_version", "runtime", "runtime_version"}
    seen = set()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            for name, value in sample.labels.items():
                seen.add(name)
                if name in closed:
                    assert value in closed[name], (sample.name, name, value)
                else:
                    assert name in free_text, (sample.name, name)
                    assert "/" not in value and len(value) <= 64, (sample.name, name, value)
    assert {"check", "status", "reason", "view"} <= seen
    for cid in checks:
        assert f'selfcheck_check_runs_total{{check="{cid}"}} 1.0' in body.decode()
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b"")


def _snapshot_of(*results: Result) -> Snapshot:
    ids = tuple(r.check for r in results)
    empty = Snapshot.empty(ids, frozenset(), 0.0)
    return Snapshot(1, ids, frozenset(), {r.check: r for r in results}, empty.counters, 1.0, 1.0)


def test_a_drift_finding_is_the_agent_container_checks_not_a_security_one() -> None:
    checks = all_checks()
    drift = Finding("env_drift", Severity.WARNING, "1 DD_* setting differs", "fix")
    outcome = checks["agent_container"].vet(
        Outcome(Status.DEGRADED, Reason.DRIFT, "drift", findings=(drift,))
    )
    snap = _snapshot_of(Result("agent_container", outcome, False, 0.0, 0.0, 1.0))
    collector = SnapshotCollector(lambda: snap, checks, lambda _: True)
    body = Exposition(collector, lambda: snap).render()[0].decode()
    assert (
        'selfcheck_finding{check="agent_container",finding="env_drift",severity="warning"} 1.0'
        in body
    )
    assert "security_finding" not in body


def test_every_check_declares_its_findings_as_label_values() -> None:
    """Each check's closed set is what dashboards and runbooks may rely on: snake_case ids."""
    checks = all_checks()
    assert checks["security"].findings and checks["agent_container"].findings
    assert "cgroups_submounts_writable" in checks["security"].findings
    assert "env_drift" in checks["agent_container"].findings
    for cid, check in checks.items():
        for fid in check.findings:
            assert re.fullmatch(r"[a-z][a-z0-9_]{0,63}", fid), (cid, fid)


def test_an_undeclared_finding_makes_the_check_an_error_not_a_new_label() -> None:
    def run(ctx: object) -> Outcome:
        return ok("fine", findings=(Finding("made_up", Severity.INFO, "m", "r"),))

    sloppy = spec("sloppy", run)
    runner = Runner(load(frozenset({"sloppy"}), {}), {"sloppy": sloppy})
    result = runner.run_cycle().results["sloppy"]
    assert (result.status, result.reason) == (Status.ERROR, Reason.EXCEPTION)
    assert "does not declare: made_up" in result.outcome.message
    body = _exposition(runner).render()[0].decode()
    assert "made_up" not in body


def test_the_metrics_module_names_no_check() -> None:
    """Rendering is generic over checks: a check's findings and enumerated gauges come from
    its spec, so no check id is spelled out in selfcheck/metrics.py."""
    import selfcheck.metrics

    source = Path(selfcheck.metrics.__file__).read_text(encoding="utf-8")
    for cid in all_checks():
        assert f'"{cid}"' not in source, cid
