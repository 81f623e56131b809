"""How every check turns a reason or an ``OSError`` into an outcome carrying its fix."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from selfcheck.config import Config
from selfcheck.host.capabilities import decode, mask_of
from selfcheck.host.files import describe
from selfcheck.host.identity import read_identity
from selfcheck.host.sockets import classify
from selfcheck.model import Outcome, Reason, Status

GENERIC_IO_FIX = (
    "An unexpected error: check the path in the message from inside the pod "
    "(kubectl exec ... -- ls -l <path>) and the node's kernel log."
)


@dataclass(frozen=True, slots=True)
class Judge:
    """One check's failure vocabulary: its fixes, what each errno means there, its statuses.

    The reasons a check may give are the keys of ``remediations``; anything else becomes
    ``io_error`` so the metric's reason label stays inside the check's documented set.
    """

    remediations: Mapping[Reason, str]
    hints: Mapping[Reason, str] = field(default_factory=dict)
    statuses: Mapping[Reason, Status] = field(default_factory=dict)

    def reason(self, error: OSError) -> Reason:
        reason = classify(error)
        return reason if reason in self.remediations else Reason.IO_ERROR

    def fix(self, reason: Reason) -> str:
        return (
            self.remediations.get(reason)
            or self.remediations.get(Reason.IO_ERROR)
            or GENERIC_IO_FIX
        )

    def outcome(self, status: Status, reason: Reason, message: str, **extra: Any) -> Outcome:
        """``status`` for ``reason`` with this check's fix for it: the reason is named once, so
        the fix shown is always the one written for that reason."""
        return Outcome(status, reason, message, self.remediations[reason], **extra)

    def failure(
        self,
        error: OSError,
        path: str | os.PathLike[str],
        what: str,
        st: os.stat_result | None = None,
        **extra: object,
    ) -> Outcome:
        """``failed`` (or the check's status for that reason) naming the path, errno and fix.

        A permission failure also names this process's identity and, given the file's
        ``st``, its owner and mode and the group to add (datadog-agent#17713).
        """
        reason = self.reason(error)
        hint = self.hints.get(reason)
        fix = self.fix(reason)
        if reason is Reason.EACCES:
            hint = f"tried as {identity()}"
            if st is not None:
                hint += f", the socket is {ownership(st)}"
                fix = f"{fix} {group_fix(st)}"
        message = f"cannot {what}: {describe(error, path)}" + (f"; {hint}" if hint else "")
        return Outcome(
            self.statuses.get(reason, Status.FAILED),
            reason,
            message,
            fix,
            **extra,  # type: ignore[arg-type]
        )


FILE_CAPS = mask_of(["CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER"])
"""The capabilities that bypass file permission checks (capabilities(7))."""


def identity() -> str:
    """Who this process is, for permission messages: ``uid 100, gid 101, groups 101, with no
    capability overriding file permissions`` (a root Agent that dropped them is denied too)."""
    groups = ",".join(str(g) for g in sorted(set(os.getgroups()))) or "none"
    who = f"uid {os.geteuid()}, gid {os.getegid()}, groups {groups}"
    try:
        held = read_identity().capabilities.effective & FILE_CAPS
    except OSError:
        return who
    return f"{who}, with {', '.join(decode(held)) if held else 'no file-permission override'}"


def ownership(st: os.stat_result) -> str:
    """``0660 uid 0 gid 107``: the facts that decide whether an open or connect is permitted."""
    return f"{stat.S_IMODE(st.st_mode):04o} uid {st.st_uid} gid {st.st_gid}"


def group_fix(st: os.stat_result) -> str:
    """The concrete supplemental group to add (fsGroup misses hostPath, datadog-agent#17713)."""
    return (
        f"Here the socket belongs to gid {st.st_gid}: add {st.st_gid} to the pod's "
        "spec.securityContext.supplementalGroups."
    )


def not_replaced(config: Config, failure: Outcome, error: OSError, own: str) -> Outcome:
    """A ``/host`` mount missing in a container: the message says the container's own ``own``
    is not read in its place (docs/architecture.md), so nobody mistakes it for a fallback."""
    if not (config.containerized and isinstance(error, FileNotFoundError)):
        return failure
    message = (
        f"{failure.message}; in a container {own} is the container's own, so it is not read "
        "in its place"
    )
    return replace(failure, message=message)
