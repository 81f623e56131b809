"""The human report of ``selfcheck check`` and ``selfcheck explain``.

Written for the on-call person who ran ``kubectl exec ... selfcheck check`` because
metrics are untagged: failures first in attention (upper-case status), each followed by
the one change that fixes it.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping

from selfcheck.model import Result, Snapshot, Status
from selfcheck.registry import CheckSpec

_WRAP = 96


def _status_word(result: Result) -> str:
    if result.status in (Status.FAILED, Status.ERROR):
        return str(result.status).upper()
    return str(result.status)


def _indented(label: str, body: str) -> list[str]:
    return textwrap.wrap(
        body,
        _WRAP,
        initial_indent=f"    {label}",
        subsequent_indent=" " * (4 + len(label)),
        break_on_hyphens=False,
    )


def _result_lines(result: Result, verbose: bool) -> list[str]:
    need = "required" if result.required else "optional"
    lines = [f"{_status_word(result):<9} {result.check:<17} {need:<9} {result.outcome.message}"]
    if result.status not in (Status.OK, Status.SKIPPED) and result.outcome.remediation:
        lines.extend(_indented("fix: ", result.outcome.remediation))
    for finding in result.outcome.findings:
        lines.extend(_indented(f"{finding.severity}: ", f"{finding.message} {finding.remediation}"))
    if verbose and result.outcome.details:
        for key, value in result.outcome.details.items():
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            lines.extend(_indented(f"{key}: ", str(shown)))
    return lines


def summary(snapshot: Snapshot) -> str:
    counts: dict[str, int] = {}
    for result in snapshot.results.values():
        counts[str(result.status)] = counts.get(str(result.status), 0) + 1
    failing = [r.check for r in snapshot.results.values() if r.blocks_readiness]
    parts = [f"{counts[str(s)]} {s}" for s in Status if str(s) in counts]
    verdict = "NOT READY: " + ", ".join(failing) if failing else "ready"
    return f"{', '.join(parts)}. {verdict}."


def render_table(snapshot: Snapshot, checks: Mapping[str, CheckSpec], verbose: bool) -> str:
    lines = [f"{'STATUS':<9} {'CHECK':<17} {'NEED':<9} MESSAGE"]
    for cid in checks:
        result = snapshot.results.get(cid)
        if result is not None:
            lines.extend(_result_lines(result, verbose))
    if snapshot.notes:
        lines.append("")
        for note in snapshot.notes:
            lines.extend(_indented("agent setting: ", note))
    lines.append("")
    lines.append(summary(snapshot))
    return "\n".join(lines)


def render_explain(spec: CheckSpec) -> str:
    lines = [f"{spec.id}: {spec.title}", ""]
    lines.extend(textwrap.wrap("What it proves: " + spec.proves, _WRAP))
    lines.append("")
    lines.extend(textwrap.wrap("Why the Agent needs it: " + spec.why, _WRAP))
    lines.append("")
    lines.extend(textwrap.wrap("Required: " + spec.required_because, _WRAP))
    lines.append("")
    lines.append("Reasons and fixes:")
    for reason, fix in spec.remediations.items():
        lines.extend(
            textwrap.wrap(fix, _WRAP, initial_indent=f"  {reason}: ", subsequent_indent="    ")
        )
    if spec.catalog:
        lines.append("")
        lines.append(f"{spec.catalog_title}:")
        for name, text in spec.catalog.items():
            lines.extend(
                textwrap.wrap(text, _WRAP, initial_indent=f"  {name}: ", subsequent_indent="    ")
            )
    if spec.figures:
        lines.append("")
        lines.append("Metrics:")
        for figure, doc in spec.figures.items():
            name = f"  selfcheck_{spec.id}_{figure}: "
            lines.extend(textwrap.wrap(doc, _WRAP, initial_indent=name, subsequent_indent="    "))
    lines.append("")
    lines.append(f"Documentation: docs/checks/{spec.id}.md")
    return "\n".join(lines)
