"""The time budget the socket checks share; failures go through ``_common.Judge``."""

from __future__ import annotations

BUDGET_CEILING = 1.5
"""Seconds a socket check allows itself at most: well inside the runner's default 2 s; within
that it takes 3/4 of what the runner's deadline leaves (``CheckContext.budget``), so a peer that
never answers yields this check's ``timeout`` with its path and fix, not the runner's generic
"abandoned" result."""
