"""How many arenas besides the main one a process's glibc malloc holds, read from its maps.

glibc maps each further arena as a heap of ``HEAP_MAX_SIZE`` (64 MiB on 64-bit), aligned to
that size, read-write as far as it is used and ``PROT_NONE`` beyond (malloc/arena.c
``new_heap``); nothing else in a Python process has that shape.
"""

from __future__ import annotations

HEAP_MAX_SIZE = 64 << 20


def _regions(pid: int) -> list[tuple[int, int, str, bool]]:
    rows = []
    with open(f"/proc/{pid}/maps", encoding="ascii", errors="replace") as maps:
        for line in maps:
            parts = line.split()
            low, high = (int(value, 16) for value in parts[0].split("-"))
            rows.append((low, high, parts[1], len(parts) > 5))
    return rows


def glibc_heaps(pid: int) -> int:
    """Arena heaps of ``pid``: 0 when every thread allocates from the main arena."""
    regions = _regions(pid)
    reserved = {
        low: high for low, high, perms, named in regions if perms[:3] == "---" and not named
    }
    heaps = 0
    for low, high, perms, named in regions:
        if named or not perms.startswith("rw") or low % HEAP_MAX_SIZE:
            continue
        if reserved.get(high, high) - low == HEAP_MAX_SIZE:
            heaps += 1
    return heaps
