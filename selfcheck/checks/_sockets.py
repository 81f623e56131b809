"""Judging helpers shared by the socket checks: the failure outcome, the time budget.

Like ``_common.os_failure``, but through ``selfcheck.host.sockets.classify``, which adds the
two socket-only reasons (``not_socket``, ``protocol_error``) to the shared errno table.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

from selfcheck.checks._common import GENERIC_IO_FIX
from selfcheck.config import Config
from selfcheck.host.files import describe
from selfcheck.host.sockets import classify
from selfcheck.model import Outcome, Reason, Status

BUDGET_CEILING = 1.5
"""Seconds a socket check allows itself: well inside the runner's default 2 s deadline."""


def budget(config: Config, ceiling: float = BUDGET_CEILING) -> float:
    """The check's own time budget: never more than 3/4 of the runner's per-check deadline.

    So a peer that never answers yields this check's ``timeout`` with its path and fix,
    not the runner's generic "abandoned" result.
    """
    return max(0.05, min(ceiling, 0.75 * config.check_timeout))


def socket_failure(
    remediations: Mapping[Reason, str],
    error: OSError,
    path: str | os.PathLike[str],
    what: str,
    allowed: frozenset[Reason],
    hints: Mapping[Reason, str] | None = None,
    status: Mapping[Reason, Status] | None = None,
    st: os.stat_result | None = None,
    **extra: object,
) -> Outcome:
    """A failed (or, per ``status``, degraded) outcome naming the path, the errno and the fix.

    ``hints`` add what the errno means for this socket ("nothing listens on it");
    reasons outside ``allowed`` become ``io_error`` so the metric label stays documented.
    With the socket's ``st``, a permission failure names the group to add.
    """
    reason = classify(error)
    if reason not in allowed:
        reason = Reason.IO_ERROR
    hint = (hints or {}).get(reason)
    message = f"cannot {what}: {describe(error, path)}" + (f"; {hint}" if hint else "")
    fix = remediations.get(reason) or remediations.get(Reason.IO_ERROR) or GENERIC_IO_FIX
    extra_fix = group_fix(st) if reason is Reason.EACCES else ""
    return Outcome(
        (status or {}).get(reason, Status.FAILED),
        reason,
        message,
        f"{fix} {extra_fix}".strip(),
        **extra,  # type: ignore[arg-type]
    )


def identity() -> str:
    """Who this process is, for permission messages: ``uid 100, gid 101, groups 101``."""
    groups = ",".join(str(g) for g in sorted(set(os.getgroups()))) or "none"
    return f"uid {os.geteuid()}, gid {os.getegid()}, groups {groups}"


def ownership(st: os.stat_result) -> str:
    """``0660 uid 0 gid 107``: the facts that decide whether a connect is permitted."""
    return f"{stat.S_IMODE(st.st_mode):04o} uid {st.st_uid} gid {st.st_gid}"


def group_fix(st: os.stat_result | None) -> str:
    """The concrete supplemental group to add, when the socket's group is known (FACTS.md 3.4)."""
    if st is None:
        return ""
    return (
        f"Here the socket belongs to gid {st.st_gid}: add {st.st_gid} to the pod's "
        "spec.securityContext.supplementalGroups."
    )
