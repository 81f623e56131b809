"""The check registry: every check module registers one ``CheckSpec`` under its id.

A check only checks. It receives a ``CheckContext`` (the configuration, the cycle's shared
host view and its deadline) and returns an ``Outcome``; the runner alone owns deadlines,
timing, counters, ``required`` and logging, so a new check cannot get any of those wrong.
The id is the module name (``selfcheck/checks/<id>.py``), the metric
label, the URL segment and the docs file name (``docs/checks/<id>.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from selfcheck.config import OWN_SETTINGS, Config
from selfcheck.context import CheckContext
from selfcheck.model import Outcome, Reason, Severity, Status, not_enabled

_BUG = "This is a bug in selfcheck, not in the pod: report it with this message."

CheckFn = Callable[[CheckContext], Outcome]
RequiredFn = Callable[[Config], bool]


def _used(config: Config) -> str:
    return ""


def _never(config: Config) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class StateGauge:
    """An enumerated gauge a check exports: 1 for the one current value of a closed set."""

    doc: str
    label: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """What a check is, beyond its code: the words ``explain`` and ``list`` print.

    ``remediations`` maps each reason the check can give to the fix a user applies; it is
    the single source for both the live result and ``selfcheck explain``. ``catalog`` lists
    any further closed set a check reports (the security findings), for ``explain``.

    ``findings`` is the closed set of finding ids the check may report: the ``finding`` label
    of ``selfcheck_finding``, so a dashboard can list every value before any node shows it.
    ``vet`` holds each run to it. ``states`` are the check's own enumerated gauges
    (``selfcheck_<id>_<name>{<label>}``, 1 for the current value of ``details[name]``), so the
    metrics module renders them without knowing which check has one.
    """

    id: str
    title: str
    run: CheckFn
    proves: str
    why: str
    remediations: Mapping[Reason, str]
    required_by_default: RequiredFn = _never
    required_because: str = "optional"
    figures: Mapping[str, str] = field(default_factory=dict)
    catalog_title: str = ""
    catalog: Mapping[str, str] = field(default_factory=dict)
    needs_view: bool = True
    """Judges files and sockets through the cycle's eyes; without any (node mode, no Agent
    to enter) it is skipped with why."""
    runs_as_selfcheck: bool = False
    """Compares selfcheck's own container with the Agent's: never run by the helper that
    holds the Agent's credentials (``selfcheck.asagent``), where "own" would be the Agent;
    its verdict's view is ``own`` (its reads are selfcheck's, not the Agent's)."""
    findings: frozenset[str] = frozenset()
    states: Mapping[str, StateGauge] = field(default_factory=dict)
    unused: Callable[[Config], str] = _used
    """Why the Agent's configuration does not use the capability ("" when it does): then,
    unless required, the verdict is ``skipped``/``not_enabled`` with the would-be one in the
    message (``settle``)."""

    def remediation(self, reason: Reason) -> str:
        return self.remediations.get(reason, "")

    def vet(self, outcome: Outcome) -> Outcome:
        """The outcome as it is, or ``UndeclaredFindingError``: a finding id outside the
        declared set would be a new label value no alert, runbook or dashboard knows."""
        undeclared = sorted({f.id for f in outcome.findings} - self.findings)
        if undeclared:
            raise UndeclaredFindingError(
                f"{self.id} reported finding ids it does not declare: {', '.join(undeclared)}"
            )
        return outcome


class UndeclaredFindingError(ValueError):
    """A check reported a finding id outside its ``CheckSpec.findings``: a bug in the check."""


_REGISTRY: dict[str, CheckSpec] = {}
_LOADED: list[bool] = []
ORDER = (
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
)
"""Every check id, in the order the report reads best: also the closed set of the checks'
names wherever another check reports about them (the service checks' receipt findings)."""


def settle(spec: CheckSpec, outcome: Outcome, required: bool, config: Config) -> Outcome:
    """What required-ness does to a check's own verdict, decided here once for every check.

    - A capability the Agent's configuration does not use, in a check nobody requires, is
      ``skipped``/``not_enabled``: nothing is lost, and a fleet view must not count it as
      working where it would not; its would-be verdict leads the message.
    - A required check's critical finding fails it (``SELFCHECK_REQUIRE=security``).
    - A required check that found nothing to judge (``not_found``) is ``degraded``, with its
      fix: the user asked for it.
    """
    if not required:
        why = spec.unused(config)
        skipped_already = outcome.status is Status.SKIPPED
        return not_enabled(why, outcome) if why and not skipped_already else outcome
    critical = any(f.severity is Severity.CRITICAL for f in outcome.findings)
    if outcome.status is Status.DEGRADED and critical:
        return replace(outcome, status=Status.FAILED)
    if outcome.status is Status.SKIPPED and outcome.reason is Reason.NOT_FOUND:
        fix = outcome.remediation or spec.remediation(Reason.NOT_FOUND)
        return replace(outcome, status=Status.DEGRADED, remediation=fix)
    return outcome


def register(spec: CheckSpec) -> CheckSpec:
    if spec.id in _REGISTRY and _REGISTRY[spec.id] is not spec:
        raise ValueError(f"check id {spec.id!r} registered twice")
    _REGISTRY[spec.id] = spec
    return spec


def _broken_check(cid: str, error: Exception) -> CheckSpec:
    """A check whose module fails to import reports ``error`` instead of taking the CLI down."""
    message = f"the {cid} check could not be loaded: {type(error).__name__}: {error}"

    def run(ctx: CheckContext) -> Outcome:
        return Outcome(Status.ERROR, Reason.EXCEPTION, message, _BUG)

    return CheckSpec(cid, "check failed to load", run, "nothing", "", {})


def _load_check_modules() -> None:
    """The modules named by ``ORDER``, the closed set of ids: no listing of the package
    directory, whose ``pkgutil`` and ``importlib.util`` the server would keep for nothing
    (``tests/test_registry.py`` holds every module of ``selfcheck/checks`` to ``ORDER``)."""
    for cid in ORDER:
        try:
            importlib.import_module(f"selfcheck.checks.{cid}")
        except Exception as error:
            register(_broken_check(cid, error))


def all_checks() -> dict[str, CheckSpec]:
    """Every registered check, in the order the report reads best (host first, then sockets)."""
    if not _LOADED:  # not "if the registry is empty": one module imported first is not all
        _load_check_modules()
        _LOADED.append(True)
    rank = {cid: i for i, cid in enumerate(ORDER)}
    ordered = sorted(_REGISTRY, key=lambda cid: (rank.get(cid, len(rank)), cid))
    return {cid: _REGISTRY[cid] for cid in ordered}


def known_ids() -> frozenset[str]:
    return frozenset(all_checks())


def required_ids(config: Config, checks: Mapping[str, CheckSpec]) -> frozenset[str]:
    """Which checks gate readiness: the Agent's configuration, then the user's overrides."""
    required = {cid for cid, spec in checks.items() if spec.required_by_default(config)}
    required |= config.require
    required -= config.skip
    return frozenset(required & set(checks))


def why_required(config: Config, spec: CheckSpec) -> str:
    if spec.id in config.skip:
        return "skipped by SELFCHECK_SKIP"
    if spec.id in config.require:
        return "required by SELFCHECK_REQUIRE"
    if spec.required_by_default(config):
        if config.settings_from != OWN_SETTINGS:
            return f"{spec.required_because} (per {config.settings_from})"
        return spec.required_because
    return "optional"
