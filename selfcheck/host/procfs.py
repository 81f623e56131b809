"""Readers for a procfs tree (the host's at ``/host/proc``, or any other root)."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from selfcheck.host.files import read_capped, read_text

STATUS_CAP = 16 * 1024
STAT_CAP = 4096
MOUNTINFO_CAP = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of ``mountinfo`` (proc(5)); paths are unescaped."""

    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    options: frozenset[str]
    fstype: str
    source: str
    super_options: frozenset[str]

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def list_pids(proc_root: Path) -> list[int]:
    """Numeric entries of a procfs root, sorted; an unreadable root raises ``OSError``.

    ``listdir`` rather than ``scandir``: no ``DirEntry`` per process, a fifth less time at
    50,000 processes (bench/cycle.py); every scanning check lists the whole root once.
    """
    names = os.listdir(proc_root)  # noqa: PTH208 - iterdir builds a Path per entry
    return sorted(int(name) for name in names if name.isdigit() and name.isascii())


def evenly_spaced(items: list[int], limit: int) -> list[int]:
    """A deterministic sample spread across the whole list, so results do not flicker."""
    if len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def parse_status(text: str, keys: Collection[str] = ()) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict; lines without a colon are ignored, not fatal.

    With ``keys``, parsing stops once all of them are found: a sampling check that needs
    only ``Uid`` (line 9 of about 55) then parses a sixth of the file (bench/cycle.py).
    """
    fields: dict[str, str] = {}
    wanted = len(keys)
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            key = key.strip()
            fields[key] = value.strip()
            if wanted and key in keys and all(k in fields for k in keys):
                break
    return fields


def read_status(proc_root: Path, pid: int | str, keys: Collection[str] = ()) -> dict[str, str]:
    """A string path, not ``Path / str / str``: sampling checks call this hundreds of times."""
    return parse_status(read_text(f"{proc_root}/{pid}/status", STATUS_CAP), keys)


def int_fields(value: str | None) -> list[int]:
    """Whitespace-separated integers (``Uid:``, ``NSpid:``); a garbled field gives ``[]``."""
    if not value:
        return []
    try:
        return [int(part) for part in value.split()]
    except ValueError:
        return []


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` octal."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        chunk = field[i : i + 4]
        if len(chunk) == 4 and chunk[0] == "\\" and all(c in "01234567" for c in chunk[1:]):
            out.append(chr(int(chunk[1:], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo_line(line: str) -> Mount | None:
    """One mountinfo line, or ``None`` when it does not have the documented shape."""
    pre, sep, post = line.partition(" - ")
    if not sep:
        return None
    left = pre.split()
    right = post.split()
    if len(left) < 6 or len(right) < 2:
        return None
    try:
        mount_id, parent_id = int(left[0]), int(left[1])
    except ValueError:
        return None
    return Mount(
        mount_id=mount_id,
        parent_id=parent_id,
        root=_unescape(left[3]),
        mount_point=_unescape(left[4]),
        options=frozenset(left[5].split(",")),
        fstype=right[0],
        source=_unescape(right[1]),
        super_options=frozenset(right[2].split(",")) if len(right) > 2 else frozenset(),
    )


def parse_mountinfo(text: str) -> list[Mount]:
    return [m for m in (parse_mountinfo_line(line) for line in text.splitlines()) if m]


def read_mountinfo(proc: Path = Path("/proc"), pid: str = "self") -> list[Mount]:
    return parse_mountinfo(read_text(proc / pid / "mountinfo", MOUNTINFO_CAP))


def mount_for(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount a path lives on: the last-mounted one with the longest matching prefix."""
    target = os.path.normpath(str(path))
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = mount
    return best


def read_start_time(proc: Path, pid: int | str) -> str:
    """Field 22 of ``<proc>/<pid>/stat``, the start time in clock ticks after boot: what tells
    a restarted process from the one seen before under the same PID (proc(5)). Empty for an
    exited process not reaped yet (state ``Z`` or ``X``: its container is gone) or a garbled
    line; ``OSError`` when the file cannot be read. The command name is skipped up to its last
    ``)``, since it may hold spaces and parentheses."""
    text = read_capped(f"{proc}/{pid}/stat", STAT_CAP).decode("ascii", "replace")
    fields = text.rpartition(")")[2].split()
    if len(fields) <= 19 or fields[0] in ("Z", "X") or not fields[19].isdigit():
        return ""
    return fields[19]
