"""The one way every check turns an ``OSError`` into a failed outcome."""

from __future__ import annotations

import os
from collections.abc import Mapping

from selfcheck.host.files import describe, reason_for
from selfcheck.model import Outcome, Reason, Status

GENERIC_IO_FIX = (
    "An unexpected error: check the path in the message from inside the pod "
    "(kubectl exec ... -- ls -l <path>) and the node's kernel log."
)


def os_failure(
    remediations: Mapping[Reason, str],
    error: OSError,
    path: str | os.PathLike[str],
    what: str,
    allowed: frozenset[Reason] | None = None,
    **extra: object,
) -> Outcome:
    """``failed`` with the errno's reason, a message naming the path, and the check's fix.

    ``allowed`` narrows the reasons a check declares; anything else becomes ``io_error`` so
    the metric's reason label stays inside the check's documented set.
    """
    reason = reason_for(error)
    if allowed is not None and reason not in allowed:
        reason = Reason.IO_ERROR
    remediation = remediations.get(reason) or remediations.get(Reason.IO_ERROR) or GENERIC_IO_FIX
    return Outcome(
        Status.FAILED,
        reason,
        f"cannot {what}: {describe(error, path)}",
        remediation,
        **extra,  # type: ignore[arg-type]
    )
