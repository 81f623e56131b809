"""The faults both sides inject into a rendered pod spec, with the verdict each must give.

One table for the lint and the runtime: ``tests/lint/test_faults.py`` lints every fault, and
``tests/deploy/test_container.py`` runs the selfcheck container built from the same broken spec
(``tests/deploy/podspec.py``) for the faults marked ``runtime``, asserting the same check id,
status and reason from its ``/status``. A fault is runtime-only-on-lint when the container test
cannot reproduce it, and says why.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from selfcheck.lint import TemplateReport, lint_pod
from selfcheck.lint.pod import agent_templates
from selfcheck.model import Reason, Status
from tests.deploy.podspec import Obj, container

SIDECAR = "selfcheck"


@dataclass(frozen=True, slots=True)
class Expect:
    check: str
    status: Status
    reason: Reason
    names: str
    """Text the remediation (or the finding's) must contain: the Helm value or field to change."""
    finding: str = ""
    lint_only: bool = False
    """A lint result id (``sidecar``) or a reason the runtime cannot give from inside the pod."""


@dataclass(frozen=True, slots=True)
class Fault:
    id: str
    inject: Callable[[Obj], None]
    expect: tuple[Expect, ...]
    runtime: str = ""
    """Empty when the container test injects it too; else why it cannot."""

    def apply(self, spec: Obj) -> Obj:
        broken: Obj = copy.deepcopy(spec)
        self.inject(broken)
        return broken


def _all_containers(spec: Obj) -> list[Obj]:
    return list(spec["containers"]) + list(spec.get("initContainers") or [])


def _no_host_pid(spec: Obj) -> None:
    spec.pop("hostPID", None)


def _no_procdir(spec: Obj) -> None:
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "procdir"]
    for item in _all_containers(spec):
        item["volumeMounts"] = [m for m in item.get("volumeMounts", []) if m["name"] != "procdir"]


def _cgroups_rw(spec: Obj) -> None:
    for item in spec["containers"]:
        for mount in item.get("volumeMounts", []):
            if mount["name"] == "cgroups":
                mount["readOnly"] = False


def _trace_agent_no_dsd(spec: Obj) -> None:
    trace = container(spec, "trace-agent")
    trace["volumeMounts"] = [
        m for m in trace["volumeMounts"] if m["mountPath"].rstrip("/") != "/var/run/datadog"
    ]


def _set_env(spec: Obj, names: tuple[str, ...], var: str, value: str) -> None:
    for name in names:
        env = [e for e in container(spec, name).get("env", []) if e["name"] != var]
        container(spec, name)["env"] = [*env, {"name": var, "value": value}]


def _cri_outside(spec: Obj) -> None:
    # The chart's /host prefix forgotten: the Agent looks in the container's own /var/run.
    _set_env(spec, ("agent", SIDECAR), "DD_CRI_SOCKET_PATH", "/var/run/containerd/containerd.sock")


def _non_root_with_passwd(spec: Obj) -> None:
    spec.setdefault("securityContext", {})["runAsUser"] = 100


def _origin_yes(spec: Obj) -> None:
    _set_env(spec, ("agent", SIDECAR), "DD_DOGSTATSD_ORIGIN_DETECTION", "yes")


def _sys_ptrace(spec: Obj) -> None:
    for name in ("agent", SIDECAR):  # the sidecar mirrors the agent's capabilities
        context = container(spec, name).setdefault("securityContext", {})
        context.setdefault("capabilities", {}).setdefault("add", []).append("SYS_PTRACE")


def _sidecar_no_dsd(spec: Obj) -> None:
    side = container(spec, SIDECAR)
    side["volumeMounts"] = [m for m in side["volumeMounts"] if m["name"] != "dsdsocket"]


def _liveness_on_readyz(spec: Obj) -> None:
    container(spec, SIDECAR)["livenessProbe"]["httpGet"]["path"] = "/readyz"


def _bad_interval(spec: Obj) -> None:
    _set_env(spec, (SIDECAR,), "SELFCHECK_INTERVAL", "thirty")


FAULTS: tuple[Fault, ...] = (
    Fault(
        "host_pid_off",
        _no_host_pid,
        (Expect("origin_detection", Status.FAILED, Reason.NOT_HOST_PID, "datadog.useHostPID"),),
    ),
    Fault(
        "procdir_removed",
        _no_procdir,
        (
            # hostPID stays on: the Agent falls back to its own /proc and keeps process metrics.
            Expect(
                "procfs", Status.DEGRADED, Reason.ENOENT, "mountPath /host/proc, readOnly: true"
            ),
            Expect("origin_detection", Status.FAILED, Reason.PROCFS_MISSING, "procdir volume"),
        ),
    ),
    Fault(
        "cgroups_read_write",
        _cgroups_rw,
        (
            Expect(
                "security",
                Status.DEGRADED,
                Reason.FINDINGS,
                "readOnly: true on the cgroups volumeMount",
                finding="cgroups_writable",
            ),
        ),
    ),
    Fault(
        "trace_agent_without_dsdsocket",
        _trace_agent_no_dsd,
        (
            Expect(
                "dogstatsd_socket",
                Status.FAILED,
                Reason.ENOENT,
                "datadog.dogstatsd.useSocketVolume",
            ),
        ),
        runtime="the container test runs the selfcheck container only, not the trace-agent",
    ),
    Fault(
        "cri_socket_outside_mount",
        _cri_outside,
        (Expect("runtime_socket", Status.FAILED, Reason.ENOENT, "datadog.criSocketPath"),),
    ),
    Fault(
        "non_root_with_passwd",
        _non_root_with_passwd,
        (
            Expect(
                "passwd",
                Status.DEGRADED,
                Reason.IDENTITY_MISMATCH,
                "securityContext.runAsUser",
                lint_only=True,
            ),
        ),
        runtime="the runtime passwd check does not yet test that its own UID is named",
    ),
    Fault(
        "origin_detection_yes",
        _origin_yes,
        (
            Expect(
                "origin_detection",
                Status.DEGRADED,
                Reason.BAD_VALUE,
                "datadog.dogstatsd.originDetection",
                lint_only=True,
            ),
        ),
        runtime="selfcheck's runtime still refuses the value at start (exit 3); the lead is "
        "changing config.py to read DD_* values the Agent's way",
    ),
    Fault(
        "sys_ptrace_added",
        _sys_ptrace,
        (
            Expect(
                "security",
                Status.DEGRADED,
                Reason.CRITICAL_FINDINGS,
                "securityContext.capabilities.add",
                finding="ptrace_with_host_pid",
            ),
        ),
    ),
    Fault(
        "sidecar_missing_dsdsocket",
        _sidecar_no_dsd,
        (
            Expect("dogstatsd_socket", Status.FAILED, Reason.ENOENT, "dsdsocket volume"),
            Expect(
                "sidecar",
                Status.DEGRADED,
                Reason.DRIFT,
                "k8s/components/selfcheck-sidecar/sidecar.yaml",
                lint_only=True,
            ),
        ),
    ),
)
FAULTS += (
    Fault(
        "liveness_probe_on_readyz",
        _liveness_on_readyz,
        (Expect("sidecar", Status.FAILED, Reason.PROBE_MISWIRED, "livenessProbe", lint_only=True),),
        runtime="the kubelet's probe wiring is not visible from inside the container",
    ),
    Fault(
        "sidecar_bad_interval",
        _bad_interval,
        (Expect("sidecar", Status.FAILED, Reason.BAD_VALUE, "SELFCHECK_", lint_only=True),),
        runtime="the runtime exits 3 at start on it: there is no verdict to compare",
    ),
)
RUNTIME_FAULTS = tuple(f for f in FAULTS if not f.runtime)


def lint_spec(spec: Obj) -> TemplateReport:
    """Lint a bare pod spec as the DaemonSet template it came from."""
    doc = {
        "kind": "DaemonSet",
        "metadata": {"name": "datadog", "namespace": "datadog"},
        "spec": {"template": {"spec": spec}},
    }
    (template,) = agent_templates([doc])
    return lint_pod(template)


def assert_lint(report: TemplateReport, expect: Expect) -> None:
    result = report.result(expect.check)
    outcome = result.outcome
    assert (outcome.status, outcome.reason) == (expect.status, expect.reason), outcome
    if expect.finding:
        found = {f.id: f for f in outcome.findings}
        assert expect.finding in found, sorted(found)
        assert expect.names in found[expect.finding].remediation
    else:
        assert expect.names in outcome.remediation, outcome.remediation
