"""What the socket checks share: their time budget and the "can pods reach it" judge.

Failures from the kernel go through ``_common.Judge``.
"""

from __future__ import annotations

from typing import Any

from selfcheck.context import CheckContext
from selfcheck.host.eyes import AGENT
from selfcheck.host.sharing import placement
from selfcheck.model import Outcome, Reason, Status

BUDGET_CEILING = 1.5
"""Seconds a socket check allows itself at most: well inside the runner's default 2 s; within
that it takes 3/4 of what the runner's deadline leaves (``CheckContext.budget``), so a peer that
never answers yields this check's ``timeout`` with its path and fix, not the runner's generic
"abandoned" result."""

STALE_SOCKET_HINT = "a stale socket file: nothing listens on it"
"""What ``ECONNREFUSED`` means on the socket file of an Agent process (DogStatsD, APM)."""


def not_shared(
    ctx: CheckContext, path: str, what: str, fix: str, details: dict[str, Any]
) -> Outcome | None:
    """``failed``/``not_shared`` when the Agent binds the socket in a directory private to its
    container (an emptyDir, a tmpfs of its own, its image), which no application pod mounts;
    ``None`` when it is a bind of a node directory. Judged in the Agent's view only: in
    selfcheck's own, the mount holding the file is selfcheck's copy, not the Agent's."""
    if ctx.host.eyes.view != AGENT:
        return None
    mounts = ctx.host.own_mounts()
    if isinstance(mounts, OSError):
        return None
    where = placement(ctx.host.root.resolve(path), mounts)
    if where is None:
        return None
    details["placement"] = where.to_json()
    if where.shared:
        return None
    return Outcome(
        Status.FAILED,
        Reason.NOT_SHARED,
        f"{path}: the {what} answers, but {where.evidence} at {where.mount_point}: application "
        "pods mount the node's directory and cannot reach it",
        fix,
        details=details,
    )
