"""The lint report: ``check``'s table within 100 columns, ``--json``, ``check``'s exit codes.

One block per pod template, then the summary line. Each result is one wrapped line (status,
check id, message), its fix under it when it is not ok, its findings and notes indented, so
a reviewer reading a pull request's CI log sees the change to make beside each problem.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence

from selfcheck.exitcodes import EXIT_CRITICAL, EXIT_OK, EXIT_WARNING
from selfcheck.lint import TemplateReport
from selfcheck.model import Status

WIDTH = 100
_HEAD = f"{'STATUS':<9} {'CHECK':<17} "


def _wrap(body: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(
        body,
        WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
        break_long_words=True,
    )


def _block(report: TemplateReport) -> list[str]:
    t = report.template
    lines = [f"{t.title}: containers {', '.join(c.name for c in t.containers)}"[:WIDTH]]
    lines.append(f"{_HEAD}MESSAGE")
    pad = " " * len(_HEAD)
    for r in report.results:
        word = str(r.status).upper() if r.status in (Status.FAILED, Status.ERROR) else str(r.status)
        need = "" if r.required else " (optional)"
        lines += _wrap(r.outcome.message + need, f"{word:<9} {r.check:<17} ", pad)
        if r.status not in (Status.OK, Status.SKIPPED) and r.outcome.remediation:
            lines += _wrap(r.outcome.remediation, "    fix: ", "         ")
        for f in r.outcome.findings:
            lines += _wrap(f"{f.message} {f.remediation}", f"    {f.severity}: ", "      ")
        issues = r.outcome.details.get("issues", [])
        for extra in issues[1:] if isinstance(issues, list) else []:
            lines += _wrap(str(extra), "    also: ", "          ")
        notes = r.outcome.details.get("notes", [])
        for note in notes if isinstance(notes, list) else []:
            lines += _wrap(str(note), "    note: ", "          ")
    return lines


def summary(reports: Sequence[TemplateReport]) -> str:
    counts: dict[str, int] = {}
    for report in reports:
        for r in report.results:
            counts[str(r.status)] = counts.get(str(r.status), 0) + 1
    failing = [
        f"{rep.template.name}/{r.check}"
        for rep in reports
        for r in rep.results
        if r.blocks_readiness
    ]
    parts = ", ".join(f"{counts[str(s)]} {s}" for s in Status if str(s) in counts)
    verdict = (
        "Required checks that would fail: " + ", ".join(failing)
        if failing
        else "No required check would fail"
    )
    return f"{parts}. {verdict}."


def render_table(reports: Sequence[TemplateReport]) -> str:
    lines: list[str] = []
    for report in reports:
        lines += _block(report)
        lines.append("")
    lines += _wrap(summary(reports), "", "")
    return "\n".join(lines)


def render_json(reports: Sequence[TemplateReport]) -> str:
    return json.dumps({"templates": [r.to_json() for r in reports]}, indent=2)


def exit_code(reports: Sequence[TemplateReport]) -> int:
    results = [r for report in reports for r in report.results]
    bad = (Status.FAILED, Status.ERROR)
    if any(r.required and r.status in bad for r in results):
        return EXIT_CRITICAL
    if any(r.status in (*bad, Status.DEGRADED) for r in results):
        return EXIT_WARNING
    return EXIT_OK
