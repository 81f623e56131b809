"""The PromQL of each fleet view, over the families ``selfcheck.metrics`` exports.

Cost is in series touched per node, so each view selects the fewest: the reason series (one
per check, and only the current reason exists) carry both the counts and the failing set; the
joins add ``selfcheck_check_required`` and ``selfcheck_check_success`` (one series per check
each) rather than the five-fold one-hot status. Nodes are told apart by the ``node`` label,
which the PodMonitor (``k8s/monitoring/podmonitor.yaml``) sets from
``__meta_kubernetes_pod_node_name``; the alert rules carry the same label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from selfcheck.metrics import (
    CHECK_LAST_SUCCESS,
    CHECK_REASON,
    CHECK_REQUIRED,
    CHECK_SUCCESS,
    READY,
)
from selfcheck.model import Reason

SINCE_WINDOW = "6h"
"""How far back the samples of a non-ok reason are counted for ``since``."""
GONE_WINDOW = "1h"
"""A node whose series went stale within this window is missing, not forgotten."""
UP_MATCHER = 'container="selfcheck"'  # the PodMonitor's target container, as in the alerts
GOOD_REASONS = (Reason.OK, Reason.DISABLED, Reason.NOT_ENABLED, Reason.NOT_APPLICABLE)
"""The reasons of ``ok`` and of the ``skipped`` checks: nothing to act on."""
_GOOD = "|".join(GOOD_REASONS)


@dataclass(frozen=True, slots=True)
class Queries:
    """The PromQL of each view. ``selector`` is extra matchers (``cluster="prod"``) for all."""

    node: str = "node"
    selector: str = ""
    check: str | None = None

    def m(self, metric: str, *extra: str, per_check: bool = True, among: Sequence[str] = ()) -> str:
        """``metric{...}`` with the selector, the check (or the checks ``among``) and ``extra``."""
        parts = [self.selector.strip().strip(",")] if self.selector.strip() else []
        if per_check and self.check is not None:
            parts.append(f'check="{self.check}"')
        elif per_check and among:
            parts.append(f'check=~"{"|".join(among)}"')
        parts.extend(extra)
        return f"{metric}{{{','.join(parts)}}}"

    def first(self) -> dict[str, str]:
        """Views over every node; ``samples`` also names the checks not ok on some node
        within the window (a superset of the current ones: cheaper than narrowing it)."""
        n = self.node
        good = self.m(CHECK_REASON, f'reason=~"{_GOOD}"')
        bad = self.m(CHECK_REASON, f'reason!~"{_GOOD}"')
        ready = self.m(READY, per_check=False)
        up = self.m("up", UP_MATCHER, per_check=False)
        return {
            "counts": f"count by (check, reason) (group by ({n}, check, reason) ({good}))",
            "samples": f"count_over_time({bad}[{SINCE_WINDOW}])",
            "reporting": f"count(group by ({n}) ({ready}))",
            "missing_nodes": (
                f"(max by ({n}) ({up})"
                f" or (group by ({n}) (last_over_time({ready}[{GONE_WINDOW}])) * 0 - 1))"
                f" unless on ({n}) group by ({n}) ({ready})"
            ),
        }

    def second(self, checks: Sequence[str]) -> dict[str, str]:
        """Details of the non-ok pairs, selecting only the checks that have some."""
        bad = self.m(CHECK_REASON, f'reason!~"{_GOOD}"', among=checks)
        required = self.m(CHECK_REQUIRED, among=checks)
        success = self.m(CHECK_SUCCESS, among=checks)
        last_ok = self.m(CHECK_LAST_SUCCESS, among=checks)
        return {
            # value: required + 2 * success (success: ok or degraded)
            "failing": (
                f"({bad} * ignoring (reason) group_left () {required})"
                f" + ignoring (reason) group_left () (2 * {success})"
            ),
            "last_success": f"{last_ok} and ignoring (reason) {bad}",
        }


def seconds(duration: str) -> float:
    """A PromQL duration such as ``6h`` in seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(duration[:-1]) * units[duration[-1]]
