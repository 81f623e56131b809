"""Every fault of the shared table, injected into each install path's render, found by lint."""

from __future__ import annotations

import pytest

from selfcheck.model import Status
from tests.deploy.podspec import Obj
from tests.lint.faults import FAULTS, Fault, assert_lint, lint_spec


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault_is_found_with_its_fix(sidecar_spec: Obj, fault: Fault) -> None:
    report = lint_spec(fault.apply(sidecar_spec))
    for expect in fault.expect:
        assert_lint(report, expect)


def test_unbroken_spec_has_none_of_the_faults(sidecar_spec: Obj) -> None:
    """The same expectations fail on the spec as rendered: the faults make the difference."""
    report = lint_spec(sidecar_spec)
    for fault in FAULTS:
        for expect in fault.expect:
            result = report.result(expect.check).outcome
            if expect.finding:  # security is degraded by the chart's defaults already
                assert expect.finding not in {f.id for f in result.findings}, fault.id
            else:
                assert (result.status, result.reason) != (expect.status, expect.reason), fault.id


def test_origin_detection_yes_is_read_as_false_and_does_not_gate(sidecar_spec: Obj) -> None:
    """The Agent reads "yes" as false: origin detection is off, so it gates nothing."""
    fault = next(f for f in FAULTS if f.id == "origin_detection_yes")
    report = lint_spec(fault.apply(sidecar_spec))
    result = report.result("origin_detection")
    assert not result.required
    assert "'yes'" in result.outcome.message


def test_sidecar_missing_mount_names_the_mount(sidecar_spec: Obj) -> None:
    fault = next(f for f in FAULTS if f.id == "sidecar_missing_dsdsocket")
    report = lint_spec(fault.apply(sidecar_spec))
    dsd = report.result("dogstatsd_socket")
    assert dsd.required and dsd.blocks_readiness
    assert dsd.outcome.message.startswith("selfcheck: /var/run/datadog/dsd.socket is on no volume")
    drift = report.result("sidecar").outcome
    assert "lacks the agent's host mount /var/run/datadog" in drift.message
    assert drift.status is Status.DEGRADED
