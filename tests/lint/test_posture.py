"""The lint's posture rules (``security``, ``sidecar``, ``agent_config``) on fixed pods."""

from __future__ import annotations

from typing import Any

from selfcheck.lint import posture
from selfcheck.model import Reason, Severity, Status
from tests.lint.pods import AGENT_VOLUMES, agent, container, pod

HARDENED = {
    "seccompProfile": {"type": "RuntimeDefault"},
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
}
PROBES = {
    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9750}},
    "livenessProbe": {"httpGet": {"path": "/livez", "port": 9750}},
    "startupProbe": {"httpGet": {"path": "/startupz", "port": 9750}},
}


def probed_sidecar(**env: str) -> dict[str, Any]:
    """A sidecar mirroring ``agent()`` (root, the same mounts), with probes wired right."""
    env = {"DD_DOGSTATSD_SOCKET": "/var/run/datadog/dsd.socket", **env}
    return {**container("selfcheck", AGENT_VOLUMES, env, uid=0), **PROBES}


def test_security_hardened_agent_has_only_the_root_note() -> None:
    hardened = container("agent", AGENT_VOLUMES, {}, security=HARDENED)
    outcome = posture.security(pod(hardened), logs=False, required=False)
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK)
    assert [(f.id, f.severity) for f in outcome.findings] == [("root_not_needed", Severity.INFO)]


def test_security_ptrace_beside_host_pid_is_critical() -> None:
    ptrace = {**HARDENED, "capabilities": {"add": ["SYS_PTRACE"]}}
    traced = pod(container("agent", AGENT_VOLUMES, {}, security=ptrace))
    optional = posture.security(traced, logs=False, required=False)
    assert (optional.status, optional.reason) == (Status.DEGRADED, Reason.CRITICAL_FINDINGS)
    assert [f.id for f in optional.findings if f.severity is Severity.CRITICAL] == [
        "ptrace_with_host_pid"
    ]
    required = posture.security(traced, logs=False, required=True)
    assert (required.status, required.reason) == (Status.FAILED, Reason.CRITICAL_FINDINGS)


def test_sidecar_skipped_without_one() -> None:
    outcome = posture.sidecar(pod(agent()), None)
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, Reason.NOT_APPLICABLE)


def test_sidecar_mirroring_the_agent_is_ok() -> None:
    outcome = posture.sidecar(pod(agent(), probed_sidecar()), None)
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK)


def test_sidecar_without_probes_is_miswired() -> None:
    bare = container("selfcheck", AGENT_VOLUMES, {}, uid=0)
    outcome = posture.sidecar(pod(agent(), bare), None)
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.PROBE_MISWIRED)
    assert outcome.message == "selfcheck: has no readinessProbe (and 1 more)"


def test_sidecar_drift_from_the_agent() -> None:
    drifted = {**probed_sidecar(DD_LOGS_ENABLED="true"), "securityContext": {"runAsUser": 100}}
    outcome = posture.sidecar(pod(agent(), drifted), None)
    assert (outcome.status, outcome.reason) == (Status.DEGRADED, Reason.DRIFT)
    assert outcome.details["issues"] == [
        "selfcheck: runAsUser is 100, the agent's is 0",
        "selfcheck: DD_LOGS_ENABLED is 'true', the agent's is 'false'",
    ]


def test_agent_config_booleans_and_ports() -> None:
    fine = posture.agent_config(pod(agent(DD_APM_NON_LOCAL_TRAFFIC="true", DD_EXPVAR_PORT="6000")))
    assert (fine.status, fine.reason, fine.message) == (
        Status.OK,
        Reason.OK,
        "2 DD_* booleans and ports parse as the Agent parses them",
    )
    bad = posture.agent_config(pod(agent(DD_APM_NON_LOCAL_TRAFFIC="yes", DD_EXPVAR_PORT="x")))
    assert (bad.status, bad.reason) == (Status.DEGRADED, Reason.BAD_VALUE)
    assert bad.details["issues"] == [
        "agent: DD_APM_NON_LOCAL_TRAFFIC='yes' is not a boolean to the Agent's parser",
        "agent: DD_EXPVAR_PORT='x' is not a port to the Agent's parser",
    ]
