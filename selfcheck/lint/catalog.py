"""Where lint's words come from: the checks' own catalog, and the few texts only lint has.

A reason a runtime check can give is explained by that check's ``CheckSpec.remediations``
(the same text ``selfcheck check`` and ``selfcheck explain`` print), looked up here and never
copied. Lint adds texts only for what no runtime check reports yet: a ``DD_*`` value the
Agent's parser rejects, a non-root Agent given the host's ``/etc/passwd``, and the sidecar's
own wiring (``sidecar``) and the Agent's other settings (``agent_config``), which are lint's
result ids beside the check ids.
"""

from __future__ import annotations

from collections.abc import Mapping

from selfcheck.config import agent_bool
from selfcheck.model import Reason
from selfcheck.registry import CheckSpec, all_checks

LINT_IDS = ("sidecar", "agent_config")
__all__ = ["LINT_IDS", "agent_bool"]

HELM_VALUES: Mapping[str, str] = {
    "DD_DOGSTATSD_ORIGIN_DETECTION": "datadog.dogstatsd.originDetection",
    "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT": "datadog.dogstatsd.originDetection",
    "DD_LOGS_ENABLED": "datadog.logs.enabled",
    "DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL": "datadog.logs.containerCollectAll",
    "DD_APM_ENABLED": "datadog.apm.portEnabled",
    "DD_APM_NON_LOCAL_TRAFFIC": "datadog.apm.portEnabled",
    "DD_DOGSTATSD_NON_LOCAL_TRAFFIC": "datadog.dogstatsd.nonLocalTraffic",
    "DD_HEALTH_PORT": "agents.containers.agent.healthPort",
    "DD_DOGSTATSD_PORT": "datadog.dogstatsd.port",
    "DD_APM_RECEIVER_PORT": "datadog.apm.port",
    "DD_CLUSTER_AGENT_ENABLED": "clusterAgent.enabled",
    "DD_ORCHESTRATOR_EXPLORER_ENABLED": "datadog.orchestratorExplorer.enabled",
}
"""The Helm value behind a ``DD_*`` variable, for the fix of a bad value."""


def bad_value_fix(name: str, kind: str) -> str:
    helm = HELM_VALUES.get(name)
    where = f"Helm {helm}, or the container's env" if helm else "the container's env"
    if kind == "port":
        return f"Set {name} ({where}) to a port number from 1 to 65535."
    return (
        f"Set {name} ({where}) to true or false. The Agent parses booleans with Go's "
        "strconv.ParseBool (1, t, T, TRUE, true, True and 0, f, F, FALSE, false, False) and "
        "reads any other value, such as yes or on, as false."
    )


_LINT_ONLY: Mapping[str, Mapping[Reason, str]] = {
    "passwd": {
        Reason.IDENTITY_MISMATCH: (
            "A non-root Agent (securityContext.runAsUser other than 0) must keep its image's "
            "/etc/passwd, which names its own user (dd-agent, UID 100); the node's file does "
            "not. Remove the passwd volume and volumeMount, as the chart does for a non-root "
            "Agent, and for process user names mount the node's /etc read-only elsewhere "
            "(e.g. /host/etc) and set HOST_ETC to it."
        ),
    },
    "sidecar": {
        Reason.PROBE_MISWIRED: (
            "Wire the selfcheck container's probes as k8s/components/selfcheck-sidecar/"
            "sidecar.yaml does: readinessProbe httpGet /readyz, livenessProbe httpGet /livez "
            "and startupProbe httpGet /startupz, on the port of SELFCHECK_LISTEN (9750). "
            "Liveness must never be /readyz: a lost host mount would restart the container "
            "in a loop instead of holding the rollout (datadog-agent#1830)."
        ),
        Reason.DRIFT: (
            "Make the selfcheck container mirror the agent container: the same host "
            "volumeMounts (name, mountPath, readOnly), the same runAsUser, runAsGroup and "
            "capabilities, and the same values of the DD_* and HOST_* variables selfcheck "
            "reads. Change k8s/components/selfcheck-sidecar/sidecar.yaml together with the "
            "Helm values (docs/kubernetes.md); otherwise its "
            "verdicts are not the Agent's."
        ),
        Reason.BAD_VALUE: (
            "A SELFCHECK_* value of the selfcheck container is invalid: selfcheck would exit "
            "at start (configuration error). Fix it in its env (README: Configuration)."
        ),
    },
    "agent_config": {},
}


def remediation(check: str, reason: Reason, checks: Mapping[str, CheckSpec] | None = None) -> str:
    """The fix for ``reason`` of ``check``: the check's own catalog first, lint's own after."""
    spec = (checks if checks is not None else all_checks()).get(check)
    text = spec.remediation(reason) if spec is not None else ""
    return text or _LINT_ONLY.get(check, {}).get(reason, "")
