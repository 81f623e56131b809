"""The human report of ``selfcheck check``, ``selfcheck list`` and ``selfcheck explain``.

Written for the on-call person who ran ``kubectl exec ... selfcheck check`` because
metrics are untagged: failures first in attention (upper-case status), each followed by
the one change that fixes it, and the verdict on the last line. Every line fits the
terminal (100 columns when there is none): long text wraps under its own column with a
hanging indent, so a narrow ``kubectl exec`` window never folds a row in the middle.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from typing import TextIO

from selfcheck.model import JSONValue, Result, Snapshot, Status
from selfcheck.registry import CheckSpec

DEFAULT_WIDTH = 100
"""Without a terminal (a pipe, a log, ``kubectl exec`` without ``-t``)."""
MIN_WIDTH = 60
"""Below this the message column would be too narrow to read; lines may then be wider."""
_KEY_CAP = 24
"""Detail keys longer than this do not widen the key column for the others."""


def output_width(stream: TextIO | None = None) -> int:
    """The terminal's width when ``stream`` is one (honouring ``COLUMNS``), else 100."""
    stream = stream or sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        tty = False
    width = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns if tty else DEFAULT_WIDTH
    return max(MIN_WIDTH, width)


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    """``text`` wrapped to ``width``, after ``first`` on line one and ``rest`` below it.

    Words longer than a line (paths, capability lists without spaces) are broken, so no
    line is ever wider than ``width``; hyphens are not break points (``no-new-privs``).
    """
    return textwrap.wrap(
        text,
        width,
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
    ) or [first.rstrip()]


class _Columns:
    """The fixed columns of ``check`` and ``list``: words and check ids, then wrapped text."""

    def __init__(self, checks: Mapping[str, CheckSpec], width: int) -> None:
        self.width = width
        self.id_width = max([len("CHECK"), *(len(cid) for cid in checks)])
        self.word_width = len("required")

    def word(self, text: str) -> tuple[str, int]:
        return text, self.word_width

    def check(self, cid: str) -> tuple[str, int]:
        return cid, self.id_width

    def row(self, cells: Sequence[tuple[str, int]], text: str) -> list[str]:
        """Each cell padded to its width, then ``text`` wrapped under its own column."""
        lead = "".join(f"{cell:<{width}}  " for cell, width in cells)
        return _wrap(text, self.width, lead, " " * len(lead))


def _labelled(label: str, text: str, width: int, indent: int = 4) -> list[str]:
    """``    fix: text`` with the continuation lines under the text, not under the label."""
    first = " " * indent + label
    return _wrap(text, width, first, " " * len(first))


def _status_word(result: Result) -> str:
    if result.status in (Status.FAILED, Status.ERROR):
        return str(result.status).upper()
    return str(result.status)


def _scalar(value: JSONValue) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _flatten(key: str, value: JSONValue) -> Iterator[tuple[str, str]]:
    """``(key, text)`` pairs for one detail: dicts by dotted keys, lists of scalars joined.

    A list of dicts (the runtime socket's candidates) gives one line per item, its fields
    as ``name=value``, so six candidates are six entries rather than a JSON blob.
    """
    if isinstance(value, Mapping):
        if not value:
            yield key, "(none)"
        for sub, item in value.items():
            yield from _flatten(f"{key}.{sub}", item)
    elif isinstance(value, list | tuple):
        if not value:
            yield key, "(none)"
        elif all(isinstance(item, Mapping) for item in value):
            for index, item in enumerate(value):
                fields = ", ".join(f"{k}={_scalar(v)}" for k, v in item.items())
                yield f"{key}[{index}]", fields
        else:
            yield key, ", ".join(_scalar(item) for item in value)
    else:
        yield key, _scalar(value)


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _detail_lines(result: Result, width: int) -> list[str]:
    pairs = [("duration", _duration(result.duration_seconds))]
    for key, value in result.outcome.details.items():
        pairs.extend(_flatten(key, value))
    pad = min(_KEY_CAP, max(len(key) for key, _ in pairs)) + 2
    lines: list[str] = []
    for key, text in pairs:
        label = f"{key}: ".ljust(pad)
        lines.extend(_labelled(label, text, width))
    return lines


def _finding_lines(result: Result, width: int, verbose: bool) -> list[str]:
    """Each finding on one line (its id and the start of its message); with ``--verbose``
    the whole message and the fix, wrapped."""
    findings = result.outcome.findings
    if verbose:
        lines: list[str] = []
        for f in findings:
            lines.extend(_labelled(f"{f.severity}: ", f"{f.message} {f.remediation}", width))
        return lines
    label = max((len(str(f.severity)) for f in findings), default=0) + 2
    ident = max((len(f.id) for f in findings), default=0) + 2
    lines = []
    for f in findings:
        line = f"    {f.severity!s:<{label}}{f.id:<{ident}}{f.message}"
        lines.append(line if len(line) <= width else line[: width - 3].rstrip() + "...")
    if findings:
        hint = f"each finding's fix: selfcheck check --verbose --only {result.check}"
        lines.extend(_labelled("", hint, width))
    return lines


def _result_lines(result: Result, columns: _Columns, verbose: bool) -> list[str]:
    need = "required" if result.required else "optional"
    cells = (columns.word(_status_word(result)), columns.check(result.check), columns.word(need))
    lines = columns.row(cells, result.outcome.message)
    if result.status not in (Status.OK, Status.SKIPPED) and result.outcome.remediation:
        lines.extend(_labelled("fix: ", result.outcome.remediation, columns.width))
    lines.extend(_finding_lines(result, columns.width, verbose))
    if verbose:
        lines.extend(_detail_lines(result, columns.width))
    return lines


def summary(snapshot: Snapshot) -> str:
    counts: dict[str, int] = {}
    for result in snapshot.results.values():
        counts[str(result.status)] = counts.get(str(result.status), 0) + 1
    parts = [f"{counts[str(s)]} {s}" for s in Status if str(s) in counts]
    verdict = "ready" if snapshot.ready else "NOT READY: " + ", ".join(snapshot.blocking)
    return f"{', '.join(parts)}. {verdict}."


def _view_lines(snapshot: Snapshot, width: int) -> list[str]:
    """Whose eyes the verdicts are: ``view: the Agent container (pid 4242), as uid 100, ...``
    or ``view: selfcheck's own mounts, ...`` with why. Checks run as selfcheck say so."""
    eyes = snapshot.eyes
    if not eyes:
        return []
    held = f", with {eyes['capabilities']}" if eyes.get("capabilities") else ""
    if eyes.get("view") == "agent":
        who = f"the Agent container (pid {eyes.get('agent_pid')}), as {eyes.get('as')}{held}"
        helper = ", through a helper holding them" if eyes.get("helper") else ""
        missing = eyes.get("capabilities_missing")
        lacks = f"; lacking the Agent's {', '.join(missing)}" if missing else ""
        text = f"{who}{helper}{lacks}"
    else:
        text = f"selfcheck's own mounts, as {eyes.get('as')}{held}: {eyes.get('why')}"
    return _wrap(text, width, "view: ", "      ")


def render_table(
    snapshot: Snapshot,
    checks: Mapping[str, CheckSpec],
    verbose: bool,
    width: int = DEFAULT_WIDTH,
) -> str:
    columns = _Columns(checks, width)
    header = (columns.word("STATUS"), columns.check("CHECK"), columns.word("NEED"))
    lines = columns.row(header, "MESSAGE")
    for cid in checks:
        result = snapshot.results.get(cid)
        if result is not None:
            lines.extend(_result_lines(result, columns, verbose))
    if snapshot.notes:
        lines.append("")
        for note in snapshot.notes:
            lines.extend(_wrap(note, width, "agent setting: ", "    "))
    view = _view_lines(snapshot, width)
    if view:
        lines += ["", *view]
    lines.append("")
    lines.extend(_wrap(summary(snapshot), width, "", ""))
    return "\n".join(lines)


def render_list(
    checks: Mapping[str, CheckSpec],
    needs: Mapping[str, tuple[str, str]],
    width: int = DEFAULT_WIDTH,
) -> str:
    """One row per check: its id, ``required``/``optional``/``skipped`` and what it proves;
    below it, why it is required here (``needs[cid]`` is the word and the sentence)."""
    columns = _Columns(checks, width)
    lines = columns.row((columns.check("CHECK"), columns.word("NEED")), "CAPABILITY")
    for cid, spec in checks.items():
        word, why = needs[cid]
        lines.extend(columns.row((columns.check(cid), columns.word(word)), spec.title))
        if why:
            indent = " " * (columns.word_width + columns.id_width + 4)
            lines.extend(_wrap(why, width, indent, indent))
    return "\n".join(lines)


def render_explain(spec: CheckSpec, width: int = DEFAULT_WIDTH) -> str:
    lines = [*_wrap(f"{spec.id}: {spec.title}", width, "", "    "), ""]
    for label, body in (
        ("What it proves: ", spec.proves),
        ("Why the Agent needs it: ", spec.why),
        ("Required: ", spec.required_because),
    ):
        lines.extend(_wrap(label + body, width, "", ""))
        lines.append("")
    lines.append("Reasons and fixes:")
    for reason, fix in spec.remediations.items():
        lines.extend(_wrap(fix, width, f"  {reason}: ", "    "))
    if spec.catalog:
        lines.extend(["", f"{spec.catalog_title}:"])
        for name, text in spec.catalog.items():
            lines.extend(_wrap(text, width, f"  {name}: ", "    "))
    if spec.figures:
        lines.extend(["", "Metrics:"])
        for figure, doc in spec.figures.items():
            lines.extend(_wrap(doc, width, f"  selfcheck_{spec.id}_{figure}: ", "    "))
    lines.extend(["", f"Documentation: docs/checks/{spec.id}.md"])
    return "\n".join(lines)
