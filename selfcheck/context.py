"""What a check receives from the runner: the configuration, the cycle's host view, its time.

The runner alone owns deadlines (docs/architecture.md): it starts each check with the moment it
will stop waiting, and a check that needs a budget of its own (a socket's receive timeout) takes
what is left of that instead of sizing one from the configuration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from selfcheck.config import Config
from selfcheck.host.view import HostView

MIN_BUDGET = 0.05


@dataclass(frozen=True, slots=True)
class CheckContext:
    config: Config
    host: HostView
    deadline: float = field(default=0.0)
    """``time.monotonic()`` at which the runner reports this check ``timeout``."""

    @classmethod
    def of(cls, config: Config, host: HostView | None = None) -> CheckContext:
        """A context for one run started now, as the runner would build it."""
        view = host or HostView(config.host_proc, config.cgroup_root)
        return cls(config, view, time.monotonic() + config.check_timeout)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def budget(self, ceiling: float, share: float = 0.75) -> float:
        """A share of what is left, so the check reports its own ``timeout`` with its path
        and fix before the runner's generic one; never more than ``ceiling``. Rounded to 10 ms,
        the precision messages show it with."""
        return round(max(MIN_BUDGET, min(ceiling, share * self.remaining())), 2)
