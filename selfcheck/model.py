"""The result model: what a check says, and the snapshot every surface reads.

Statuses and reasons are closed sets (``StrEnum``) because they become Prometheus label
values and JSON fields: a free-form string there would explode series cardinality and
break alerts that match on them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

JSONValue = Any
"""A value that ``json.dumps`` accepts; checks keep details small and flat."""


class Status(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"

    @property
    def is_success(self) -> bool:
        """Degraded still counts as success: the capability works, with a caveat."""
        return self in (Status.OK, Status.DEGRADED)


class Reason(enum.StrEnum):
    """Every reason any check may give. Adding one is a deliberate change of the metric schema."""

    OK = "ok"
    # skipped
    DISABLED = "disabled"
    NOT_ENABLED = "not_enabled"
    NOT_APPLICABLE = "not_applicable"
    # file system and errno
    ENOENT = "enoent"
    EACCES = "eacces"
    IO_ERROR = "io_error"
    PARSE_ERROR = "parse_error"
    # procfs
    NOT_PROCFS = "not_procfs"
    NOT_HOST = "not_host"
    HIDEPID = "hidepid"
    # cgroups
    NO_CONTROLLERS = "no_controllers"
    OWN_CGROUP_NOT_FOUND = "own_cgroup_not_found"
    # passwd
    LOW_UID_COVERAGE = "low_uid_coverage"
    # sockets
    NOT_SOCKET = "not_socket"
    ECONNREFUSED = "econnrefused"
    EAGAIN = "eagain"
    TIMEOUT = "timeout"
    PROTOCOL_ERROR = "protocol_error"
    # origin detection
    NOT_HOST_PID = "not_host_pid"
    PID_ZERO = "pid_zero"
    NO_CONTAINER_ID = "no_container_id"
    PRIVATE_CGROUPNS = "private_cgroupns"
    PROCFS_MISSING = "procfs_missing"
    # pod logs
    NO_LOG_FILE = "no_log_file"
    # agent health
    UNHEALTHY = "unhealthy"
    # security
    FINDINGS = "findings"
    CRITICAL_FINDINGS = "critical_findings"
    # the check itself broke
    EXCEPTION = "exception"
    # selfcheck lint: what a rendered manifest shows before any pod runs
    BAD_VALUE = "bad_value"
    IDENTITY_MISMATCH = "identity_mismatch"
    PROBE_MISWIRED = "probe_miswired"
    # agent container (the Agent's own processes through hostPID); drift is lint's too
    NOT_FOUND = "not_found"
    DRIFT = "drift"
    FOREIGN_LISTENER = "foreign_listener"
    TWO_AGENTS = "two_agents"
    # origin detection: the Agent's receipt and the client-sent inode
    NOT_RECEIVED = "not_received"
    INODE_UNRESOLVED = "inode_unresolved"
    # a socket the Agent binds where application pods cannot reach it
    NOT_SHARED = "not_shared"


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


NODE_INFO_KEYS = (
    "os_id",
    "os_version_id",
    "kernel",
    "cgroup_version",
    "runtime",
    "runtime_version",
)
"""The only keys a check may contribute to ``selfcheck_node_info``."""


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding of a check; ``id`` is a label value, so it comes from the check's closed set
    (``CheckSpec.findings``)."""

    id: str
    severity: Severity
    message: str
    remediation: str

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "id": self.id,
            "severity": str(self.severity),
            "message": self.message,
            "remediation": self.remediation,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a check returns. The runner adds timing, ``required`` and bookkeeping.

    ``figures`` become gauges named ``selfcheck_<check>_<figure>``; ``node_info`` feeds
    ``selfcheck_node_info`` (keys from ``NODE_INFO_KEYS``); ``findings`` feed
    ``selfcheck_finding{check,finding,severity}``, their ids from the check's declared set.
    """

    status: Status
    reason: Reason
    message: str
    remediation: str = ""
    details: Mapping[str, JSONValue] = field(default_factory=dict)
    figures: Mapping[str, float] = field(default_factory=dict)
    node_info: Mapping[str, str] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    view: str = ""
    """Set only by a check whose verdict is another's than the cycle's eyes (the audit reads
    the Agent's status even when its root cannot be entered); the runner's otherwise."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", _frozen(self.details))
        object.__setattr__(self, "figures", _frozen(self.figures))
        object.__setattr__(self, "node_info", _frozen(self.node_info))
        unknown = set(self.node_info) - set(NODE_INFO_KEYS)
        if unknown:
            raise ValueError(f"node_info keys outside the closed set: {sorted(unknown)}")


def outcome_from_json(body: Mapping[str, Any]) -> Outcome:
    """The inverse of ``CheckVerdict.to_json`` plus figures and node info: how a helper process's
    verdicts come back. Unknown statuses, reasons or severities raise ``ValueError``."""
    findings = tuple(
        Finding(str(f["id"]), Severity(f["severity"]), str(f["message"]), str(f["remediation"]))
        for f in body.get("findings", ())
    )
    return Outcome(
        Status(body["status"]),
        Reason(body["reason"]),
        str(body["message"]),
        str(body.get("remediation", "")),
        details=dict(body.get("details", {})),
        figures={str(k): float(v) for k, v in dict(body.get("figures", {})).items()},
        node_info={str(k): str(v) for k, v in dict(body.get("node_info", {})).items()},
        findings=findings,
        view=str(body.get("view", "")),
    )


def ok(message: str, **extra: Any) -> Outcome:
    return Outcome(Status.OK, Reason.OK, message, **extra)


def failed(reason: Reason, message: str, remediation: str, **extra: Any) -> Outcome:
    """A failure always says what to change: the remediation is not optional here."""
    return Outcome(Status.FAILED, reason, message, remediation, **extra)


def skipped(reason: Reason, message: str, **extra: Any) -> Outcome:
    return Outcome(Status.SKIPPED, reason, message, **extra)


def not_enabled(unused: str, verdict: Outcome) -> Outcome:
    """A capability the Agent's configuration does not use: ``skipped``/``not_enabled``, never
    ``ok`` (a fleet view would count it working where it would not) nor ``failed`` (nothing is
    lost), with the verdict it would get if it were used leading the message."""
    shown = str(verdict.status)
    if verdict.reason != Reason.OK:
        shown += f" ({verdict.reason})"
    return Outcome(
        Status.SKIPPED,
        Reason.NOT_ENABLED,
        f"{unused}; if it were, the verdict would be {shown}: {verdict.message}",
        details={**verdict.details, "would_be": [str(verdict.status), str(verdict.reason)]},
        figures=verdict.figures,
    )


@dataclass(frozen=True, slots=True)
class CheckVerdict:
    """One check's outcome and whether it gates readiness: what a run (``/status``) and a
    prediction (``selfcheck lint``) both show. ``Result`` adds the run's timing."""

    check: str
    outcome: Outcome
    required: bool

    @property
    def status(self) -> Status:
        return self.outcome.status

    @property
    def reason(self) -> Reason:
        return self.outcome.reason

    @property
    def blocks_readiness(self) -> bool:
        return self.required and self.status in (Status.FAILED, Status.ERROR)

    def to_json(self) -> dict[str, JSONValue]:
        body: dict[str, JSONValue] = {
            "check": self.check,
            "status": str(self.status),
            "reason": str(self.reason),
            "required": self.required,
            "message": self.outcome.message,
            "remediation": self.outcome.remediation,
            "details": dict(self.outcome.details),
        }
        if self.outcome.findings:
            body["findings"] = [f.to_json() for f in self.outcome.findings]
        return body


@dataclass(frozen=True, slots=True)
class Result(CheckVerdict):
    """One run of one check, as every surface shows it."""

    duration_seconds: float
    started_at: float
    finished_at: float
    view: str = "own"
    """Whose view the verdict is: ``agent`` (the Agent container's root and identity) or
    ``own`` (selfcheck's own mounts); a closed set, the ``view`` label."""

    def to_json(self) -> dict[str, JSONValue]:
        body = CheckVerdict.to_json(self)
        body["duration_seconds"] = round(self.duration_seconds, 6)
        body["finished_at"] = round(self.finished_at, 3)
        body["view"] = self.view
        if self.outcome.figures:
            body["figures"] = dict(self.outcome.figures)
        return body


@dataclass(frozen=True, slots=True)
class CheckCounters:
    """Per-check totals carried from snapshot to snapshot; they count runs, never scrapes."""

    runs: int = 0
    failures: int = 0
    last_success_at: float | None = None

    def after(self, result: Result) -> CheckCounters:
        failed = result.status in (Status.FAILED, Status.ERROR)
        return CheckCounters(
            runs=self.runs + 1,
            failures=self.failures + (1 if failed else 0),
            last_success_at=result.finished_at
            if result.status.is_success
            else self.last_success_at,
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable view of the latest cycle; endpoints read one reference and never lock."""

    generation: int
    check_ids: tuple[str, ...]
    required: frozenset[str]
    results: Mapping[str, Result]
    counters: Mapping[str, CheckCounters]
    completed_at: float | None
    created_at: float
    notes: tuple[str, ...] = ()
    """The Agent's own settings it would reject or ignore (``Config.agent_notes``)."""
    eyes: Mapping[str, JSONValue] = field(default_factory=dict)
    """Whose eyes the last cycle looked through, and why (``selfcheck.host.eyes.Eyes``)."""

    @classmethod
    def empty(cls, check_ids: tuple[str, ...], required: frozenset[str], now: float) -> Snapshot:
        return cls(
            generation=0,
            check_ids=check_ids,
            required=required,
            results=_frozen({}),
            counters=_frozen({cid: CheckCounters() for cid in check_ids}),
            completed_at=None,
            created_at=now,
        )

    blocking: tuple[str, ...] = field(init=False, default=())
    """Required checks that failed or errored, in report order: decided once, here."""

    def __post_init__(self) -> None:
        blocking = tuple(
            cid
            for cid in self.check_ids
            if cid in self.results and self.results[cid].blocks_readiness
        )
        object.__setattr__(self, "blocking", blocking)

    @property
    def started(self) -> bool:
        return self.completed_at is not None

    def is_fresh(self, now: float, max_age: float) -> bool:
        return self.completed_at is not None and now - self.completed_at <= max_age

    @property
    def ready(self) -> bool:
        """The verdict every surface shows (``/readyz``, ``selfcheck_ready``, the exit code,
        the report): a cycle finished and no required check failed. Freshness is the only
        part that depends on the clock; ``is_ready`` adds it."""
        return self.started and not self.blocking

    def failing_required(self, exclude: frozenset[str] = frozenset()) -> list[Result]:
        return [self.results[cid] for cid in self.blocking if cid not in exclude]

    def is_ready(self, now: float, max_age: float, exclude: frozenset[str] = frozenset()) -> bool:
        if not self.is_fresh(now, max_age):
            return False
        return self.ready if not exclude else not self.failing_required(exclude)

    def node_info(self) -> dict[str, str]:
        info = dict.fromkeys(NODE_INFO_KEYS, "")
        for cid in self.check_ids:
            result = self.results.get(cid)
            if result is not None:
                info.update({k: v for k, v in result.outcome.node_info.items() if v})
        return info

    def to_json(self, now: float, max_age: float) -> dict[str, JSONValue]:
        return {
            "generation": self.generation,
            "ready": self.is_ready(now, max_age),
            "completed_at": self.completed_at,
            "node": self.node_info(),
            "configuration_notes": list(self.notes),
            "view": dict(self.eyes),
            "checks": [self.results[c].to_json() for c in self.check_ids if c in self.results],
        }
