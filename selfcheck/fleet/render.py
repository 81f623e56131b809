"""The fleet view as text: counts per check, the failing pairs, the missing nodes, a verdict.

Every line fits 100 columns, so the report pastes into a ticket or a chat unchanged; a node
name too long for its column gets a line of its own rather than being cut.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from selfcheck.exitcodes import EXIT_WARNING
from selfcheck.fleet.queries import SINCE_WINDOW
from selfcheck.fleet.view import COLUMNS, Failing, FleetView
from selfcheck.model import Status

_WIDTH = 100


def age(seconds: float) -> str:
    """A duration the way ``kubectl`` shows ages: ``9s``, ``2m05s``, ``2h01m``, ``3d04h``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _since_text(f: Failing, at: float) -> str:
    """The SINCE cell: an age, ``>6h`` past the window, ``-`` when unknown."""
    if f.since is None:
        return "-"
    if f.since_source == "window":
        return f">{SINCE_WINDOW}"
    return age(at - f.since)


def _rows(head: Sequence[str], rows: Iterable[Sequence[str]], first_max: int = 40) -> list[str]:
    """Left-aligned columns; a first cell too long for 100 columns gets a line of its own."""
    rows = list(rows)
    widths = [len(h) for h in head]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    rest = sum(w + 2 for w in widths[1:])
    widths[0] = min(widths[0], max(len(head[0]), _WIDTH - rest, 8), first_max)
    lines = []
    for row in [list(head), *rows]:
        tail = "  ".join(f"{c:<{w}}" for c, w in zip(row[1:], widths[1:], strict=True))
        if len(row[0]) > widths[0]:
            lines.append(row[0][:_WIDTH])
            lines.append((" " * (widths[0] + 2) + tail).rstrip())
        else:
            lines.append(f"{row[0]:<{widths[0]}}  {tail}".rstrip())
    return lines


def _failing_row(f: Failing, at: float) -> list[str]:
    """One failing pair; failures in capitals, as in ``selfcheck check``."""
    return [
        f.node or "(no node label)",
        f.check,
        f.status.upper() if f.status != Status.DEGRADED else str(f.status),
        "required" if f.required else "optional",
        f.reason,
        _since_text(f, at),
    ]


def _failing_lines(view: FleetView, limit: int) -> list[str]:
    """The failing pairs, the first ``limit`` of them (all for 0)."""
    if not view.failing:
        return []
    shown = view.failing if limit <= 0 else view.failing[:limit]
    head = ("NODE", "CHECK", "STATUS", "NEED", "REASON", "SINCE")
    lines = ["", *_rows(head, (_failing_row(f, view.evaluated_at) for f in shown))]
    if len(shown) < len(view.failing):
        lines.append(f"... and {len(view.failing) - len(shown)} more (--limit 0 or --json)")
    return lines


def render(view: FleetView, limit: int = 100) -> str:
    """The whole report."""
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(view.evaluated_at))
    gone = len(view.missing)
    lines = [
        f"Prometheus {view.url} at {at}: {view.reporting + gone} nodes,"
        f" {view.reporting} reporting, {gone} missing",
        "",
    ]
    head = ("CHECK", *(c.upper() for c in COLUMNS))
    lines += _rows(
        head, ([cid, *(str(row[c]) for c in COLUMNS)] for cid, row in view.counts.items())
    )
    lines += _failing_lines(view, limit)
    if view.missing:
        missing = ([m.node or "(no node label)", m.why] for m in view.missing)
        lines += ["", *_rows(("MISSING NODE", "WHY"), missing)]
    lines += ["", _verdict(view)]
    return "\n".join(line[:_WIDTH] for line in lines)


def _verdict(view: FleetView) -> str:
    """The last line: what the exit code means for this fleet."""
    critical = {f.node for f in view.failing if f.critical}
    others = {f.node for f in view.failing} - critical
    if critical:
        return f"NOT READY: {len(critical)} node(s) fail a required check (exit 2)."
    if view.exit_code == EXIT_WARNING:
        return (
            f"{len(others)} node(s) degraded or failing an optional check,"
            f" {len(view.missing)} missing (exit 1)."
        )
    return "Every reporting node is ok (exit 0)."
