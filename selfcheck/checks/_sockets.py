"""The time budget the socket checks share; failures go through ``_common.Judge``."""

from __future__ import annotations

from selfcheck.config import Config

BUDGET_CEILING = 1.5
"""Seconds a socket check allows itself: well inside the runner's default 2 s deadline."""


def budget(config: Config, ceiling: float = BUDGET_CEILING) -> float:
    """The check's own time budget: never more than 3/4 of the runner's per-check deadline.

    So a peer that never answers yields this check's ``timeout`` with its path and fix,
    not the runner's generic "abandoned" result.
    """
    return max(0.05, min(ceiling, 0.75 * config.check_timeout))
