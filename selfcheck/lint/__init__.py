"""``selfcheck lint``: the runtime checks' verdicts predicted from a rendered manifest.

``loader`` reads and bounds the input, ``pod`` finds the Agent pod templates, ``operator``
builds the node Agent's pod of a DatadogAgent resource by the Operator's rules (into the same
model, its fixes retargeted to the resource's fields), ``rules`` and ``posture`` judge one
check id each, ``report`` prints. Which checks are required is decided
by the registry's own rules (``CheckSpec.required_by_default``) over a configuration loaded
from the gating container's environment, so lint and readiness agree on what gates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from selfcheck.config import Config, ConfigError, load
from selfcheck.lint import operator, posture, rules
from selfcheck.lint.catalog import LINT_IDS, agent_bool
from selfcheck.lint.loader import InputError, objects, parse_documents
from selfcheck.lint.pod import Container, PodTemplate, agent_templates
from selfcheck.model import CheckVerdict, Outcome
from selfcheck.registry import CheckSpec, all_checks, required_ids, settle

__all__ = ["InputError", "TemplateReport", "lint_pod", "lint_text"]

RULES: Mapping[str, Callable[[PodTemplate], Outcome]] = {
    "procfs": rules.procfs,
    "cgroups": rules.cgroups,
    "os_release": rules.os_release,
    "passwd": rules.passwd,
    "runtime_socket": rules.runtime_socket,
    "dogstatsd_socket": rules.dogstatsd_socket,
    "dogstatsd_udp": rules.dogstatsd_udp,
    "apm_socket": rules.apm_socket,
    "origin_detection": rules.origin_detection,
    "pod_logs": rules.pod_logs,
    "agent_health": rules.agent_health,
}


@dataclass(frozen=True, slots=True)
class TemplateReport:
    template: PodTemplate
    results: tuple[CheckVerdict, ...]

    def result(self, check: str) -> CheckVerdict:
        return next(r for r in self.results if r.check == check)

    def to_json(self) -> dict[str, object]:
        t = self.template
        body: dict[str, object] = {
            "kind": t.kind,
            "namespace": t.namespace,
            "name": t.name,
            "containers": [c.name for c in t.containers],
        }
        if t.source:  # a pod built from a resource: by what rules, and each fact's field
            body["built_by"] = t.source
            body["fields"] = dict(t.fields)
        body["ready"] = not any(r.blocks_readiness for r in self.results)
        body["checks"] = [r.to_json() for r in self.results]
        return body


def _in_a_pod(env: Mapping[str, str]) -> tuple[bool, str]:
    """A manifest's containers are containers: host paths never fall back to plain ones."""
    return True, "a container of the manifest"


def _config(gate: Container, checks: Mapping[str, CheckSpec]) -> tuple[Config, str | None]:
    """The gating container's configuration, read by the runtime's own loader: DD_* values the
    Agent's way (never an error), SELFCHECK_* ones strictly (an error is reported)."""
    uid = gate.uid if gate.uid is not None else 0
    env = dict(gate.env)
    try:
        return load(frozenset(checks), env, euid=lambda: uid, containerized=_in_a_pod), None
    except ConfigError as error:
        plain = {k: v for k, v in env.items() if not k.startswith("SELFCHECK_")}
        config = load(frozenset(checks), plain, euid=lambda: uid, containerized=_in_a_pod)
        return config, str(error)


def lint_pod(template: PodTemplate) -> TemplateReport:
    checks = all_checks()
    gate = template.sidecar or template.agent
    config, config_error = _config(gate, checks)
    required = required_ids(config, checks)
    logs = bool(agent_bool(template.agent.setting("DD_LOGS_ENABLED") or "false"))
    outcomes: dict[str, Outcome] = {cid: rule(template) for cid, rule in RULES.items()}
    outcomes["security"] = posture.security(template, logs, "security" in required)
    outcomes["sidecar"] = posture.sidecar(template, config_error)
    outcomes["agent_config"] = posture.agent_config(template)
    for cid, outcome in outcomes.items():
        if cid in checks:  # what required-ness does, as the runner does it (registry.settle)
            outcomes[cid] = settle(checks[cid], outcome, cid in required, config)
        if template.fields:
            outcomes[cid] = operator.retarget(outcomes[cid], cid, template.fields)
    order = [cid for cid in checks if cid in outcomes] + [cid for cid in LINT_IDS]
    lint_required = {"sidecar": template.sidecar is not None, "agent_config": False}
    results = tuple(
        CheckVerdict(cid, outcomes[cid], cid in required or lint_required.get(cid, False))
        for cid in order
    )
    return TemplateReport(template, results)


def templates(documents: list[Any], operator_version: str = "") -> list[PodTemplate]:
    """The Agent pod templates of DaemonSets and Pods, and the node Agent's pod of each
    DatadogAgent built by the Operator's rules of ``operator_version`` (default: the newest)."""
    version = operator.parse_version(operator_version) if operator_version else operator.NEWEST
    docs = list(objects(documents))
    built = [operator.build(doc, version) for doc in operator.resources(docs)]
    rest = [doc for doc in docs if doc.get("kind") != operator.KIND]
    if not built:
        return agent_templates(rest)
    if not any(doc.get("kind") in ("DaemonSet", "Pod") for doc in rest):
        return built
    try:
        return agent_templates(rest) + built
    except InputError:  # DaemonSets beside the resource, none of them an Agent's
        return built


def lint_text(text: str, operator_version: str = "") -> list[TemplateReport]:
    """Every Agent pod template in ``text``, judged; ``InputError`` for unusable input."""
    return [lint_pod(t) for t in templates(parse_documents(text), operator_version)]
