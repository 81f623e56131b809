"""Writes a synthetic host cgroup tree matching a ``bench/proctree.py`` tree's processes.

    python bench/cgrouptree.py DIR PROCESSES [CONTAINERS]

Every cgroup path the synthetic processes name (pod-level ``pod<uid>`` directories, their
64-hex container directories, the unresolvable ``custom-parent-*`` ones, ``system.slice``
units) becomes a directory, padded with further container directories under their own pods
until the tree holds at least ``CONTAINERS`` (300) container cgroups. Each directory gets the
files a cgroup v1 memory directory has (``FILES`` of them), since listing them is most of a
walk's cost. The tree is what ``origin_detection``'s inode map walks in ``bench/cycle.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import proctree

CONTAINERS = 300
FILES = [
    "cgroup.clone_children",
    "cgroup.event_control",
    "cgroup.procs",
    "memory.failcnt",
    "memory.force_empty",
    "memory.limit_in_bytes",
    "memory.max_usage_in_bytes",
    "memory.memsw.usage_in_bytes",
    "memory.move_charge_at_immigrate",
    "memory.numa_stat",
    "memory.oom_control",
    "memory.pressure_level",
    "memory.soft_limit_in_bytes",
    "memory.stat",
    "memory.swappiness",
    "memory.usage_in_bytes",
    "memory.use_hierarchy",
    "notify_on_release",
    "tasks",
]


def _cgroup(root: Path, path: str) -> None:
    directory = root / path.lstrip("/")
    if directory.is_dir():
        return
    directory.mkdir(parents=True)
    for name in FILES:
        (directory / name).touch()


def generate(root: Path, processes: int, containers: int = CONTAINERS) -> int:
    """Write the tree under ``root`` (created); returns the number of container cgroups."""
    root.mkdir(parents=True)
    paths = {proctree.cgroup_path(pid) for pid in proctree.pids_for(max(processes, 3))}
    for path in sorted(paths):
        _cgroup(root, path)
    found = sum(1 for p in paths if len(p.rsplit("/", 1)[-1]) == 64)
    extra = 0
    while found < containers:
        pod = f"/kubepods/besteffort/pod{extra:08x}-0000-4000-8000-000000000000"
        _cgroup(root, f"{pod}/{proctree.container_id(10_000_000 + extra)}")
        extra += 1
        found += 1
    return found


def main() -> None:
    """Parse ``DIR PROCESSES [CONTAINERS]`` and write the tree."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("processes", type=int)
    parser.add_argument("containers", type=int, nargs="?", default=CONTAINERS)
    args = parser.parse_args()
    count = generate(args.directory, args.processes, args.containers)
    print(f"wrote {count} container cgroups under {args.directory}")


if __name__ == "__main__":
    main()
