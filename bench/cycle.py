"""Cycle time against synthetic host proc trees of 1,000, 10,000 and 50,000 processes.

    python bench/cycle.py [--sizes 1000,10000,50000] [--repeat 11] [--no-runtime]
    python bench/cycle.py --tree OLD --tree NEW [--sizes 1000] [--repeat 11]

With ``--tree`` each source tree (a checkout of selfcheck) runs the same full cycle, in a fresh
interpreter of its own, one after the other in the same run, and the table gives each one's
median and best cycle and CPU with its ratio to the first tree.

docs/performance.md: a full cycle (all checks, sockets answering) under 50 ms with 1,000
host processes, its cost growing no faster than linearly, sampled where it must scan.

Rows (each the median of ``--repeat`` runs, in this process, after one warm-up cycle):

- ``list_pids``: listing the tree's numeric entries (``selfcheck.host.procfs.list_pids``);
  every scanning check does this once, and it is linear by nature.
- ``passwd sample``: ``passwd.sample_uids``: list, then ``status`` of an evenly spaced
  sample of ``SELFCHECK_SAMPLE`` (256) processes.
- ``origin_detection sample``: ``origin_detection.sample_all`` without the inode map: list,
  then the Agent's container-ID rule on the ``cgroup`` of the same sample.
- ``inode map``: ``selfcheck.host.inodes.build_inode_map`` over a synthetic cgroup v1 memory
  tree (``bench/cgrouptree.py``) holding every cgroup the tree's processes name, padded to
  at least 300 container cgroups (the ``container cgroups`` line), each directory with the
  19 files a memory cgroup has; the real column walks this machine's own hierarchy.
- ``sample + clients``: ``origin_detection.sample_all`` with that map: the same sample, plus
  each container process's client inode resolved through the map and its client ID.
- ``procfs check``: ``procfs.run`` on the tree. The tree is a tmpfs directory, not a
  procfs mount, so the check's mount lookup is replaced by one that answers ``proc``;
  everything else it does (list, count, read PID 1 and 2) runs as in production.
- ``full cycle``: ``Runner.run_cycle()`` with every check, in node mode, through the eyes of
  an Agent process the tree holds (``proctree.add_agent``: ``agent run``, this process's
  identity, its root a link to ``/``, the stand-ins' settings in its ``environ``), so every
  path is walked inside the Agent's root as on a node; ``HOST_PROC`` at the tree,
  ``origin_detection`` walking the synthetic cgroup tree as the node's (its cgroup layout
  answers "v1, memory at the tree"), the client mechanisms enabled, and every socket
  answering: DogStatsD, trace-agent, health and expvar stand-ins (counting packets like the
  Agent, for the receipt) in another process, a real containerd for the CRI call
  (``--no-runtime`` leaves it out). Like
  ``selfcheck serve``, the objects alive after the warm-up cycle are frozen out of the
  garbage collector's generations (``gc.freeze``).
- ``full cycle, best run``: the fastest of the ``--repeat`` cycles: on a shared machine the
  median carries other tenants' noise (it moved by half between runs here), the best run
  is the cycle's own cost.
- ``cycle CPU``: CPU seconds of this process and its reaped children per full cycle.

A second table runs each check alone, one after the other: where the cycle's time goes.

A synthetic tree on tmpfs is cheaper to read than a real procfs, where the kernel renders
each ``status`` on read; the ``real /proc`` column runs the same rows on this machine's
own procfs for scale (few processes, but real per-file costs).
"""

# ruff: noqa: E402 (the repository root goes on sys.path before the project imports)
from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

if "--child" in sys.argv:  # the measured source tree's selfcheck, this tree's bench
    sys.path.insert(0, sys.argv[sys.argv.index("--child") + 1])
    importlib.import_module("selfcheck")  # stays in sys.modules: its submodules follow
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfcheck.context import CheckContext
from selfcheck.host import view as host_view
from selfcheck.registry import all_checks

CHECKS = all_checks()

from bench import cgrouptree, proctree
from bench._common import answering_node, median, ms, print_header, table, workdir
from selfcheck.checks import passwd, procfs
from selfcheck.config import load
from selfcheck.host.cgroup import CgroupLayout, detect_layout
from selfcheck.host.inodes import agent_hierarchy, build_inode_map
from selfcheck.host.procfs import Mount, list_pids, read_mountinfo
from selfcheck.runner import Runner

SAMPLE = 256
ROWS = (
    "list_pids",
    "passwd sample",
    "origin_detection sample",
    "inode map",
    "sample + clients",
    "procfs check",
    "full cycle",
    "full cycle, best run",
    "cycle CPU",
)


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return median(times)


def _fake_proc_mount(*args: object) -> Mount:
    path = next(a for a in args if isinstance(a, Path | str))
    return Mount(0, 0, "/", str(path), frozenset({"ro"}), "proc", "proc", frozenset({"rw"}))


@contextmanager
def procfs_mount_answers_proc(tree: Path | None, cgroups: Path | None = None) -> Iterator[None]:
    if tree is None:
        yield
        return
    layout = CgroupLayout("v1", {"memory": str(cgroups)}, None)
    with contextlib.ExitStack() as stack:
        # Patched where the tree being measured has them (``--tree`` runs older ones too).
        # The Agent's /host mounts are the synthetic trees (its root is this machine's /).
        origin = _origin_reader()
        for module, name, value in (
            (procfs, "_mount_of", _fake_proc_mount),
            (origin, "detect_layout", lambda mounts, root: layout),
            (host_view, "detect_layout", lambda mounts, root: layout),
            (origin, "AGENT_HOST_PROC", tree),
            (origin, "AGENT_HOST_CGROUP", cgroups),
            (procfs, "AGENT_HOST_PROC", tree),
        ):
            if hasattr(module, name):
                stack.enter_context(mock.patch.object(module, name, value))
        yield


def _origin_reader() -> ModuleType:
    """Where origin detection reads the host: its evidence module, or the one-module check of
    the releases before it (``--tree`` measures those too)."""
    try:
        return importlib.import_module("selfcheck.checks.origin_detection.evidence")
    except ImportError:
        return importlib.import_module("selfcheck.checks.origin_detection")


def _sampler() -> Any:
    """``sample_all``: in ``selfcheck.host.sampling``, or in the older one-module check."""
    try:
        return importlib.import_module("selfcheck.host.sampling").sample_all
    except ImportError:
        return importlib.import_module("selfcheck.checks.origin_detection").sample_all


def cpu_now() -> float:
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


@dataclass
class Column:
    """One column of the table: a tree (or the real /proc) and what was measured on it."""

    processes: int
    cgroups: int = 0
    times: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    solo: dict[str, float] = field(default_factory=dict)


def _hierarchy(cgroups: Path | None) -> str:
    if cgroups is not None:
        return str(cgroups)
    return agent_hierarchy(detect_layout(read_mountinfo(), "/sys/fs/cgroup")) or "/sys/fs/cgroup"


def measure(host_proc: Path, cgroups: Path | None, env: dict[str, str], repeat: int) -> Column:
    checks = CHECKS
    settings = {**env, "HOST_PROC": str(host_proc)}
    if cgroups is not None:
        settings["DD_CONTAINER_CGROUP_ROOT"] = str(cgroups)
        proctree.add_agent(host_proc, settings, cgroups)
        settings["SELFCHECK_MODE"] = "node"
    config = load(frozenset(checks), settings)
    runner = Runner(config, checks)
    hierarchy = _hierarchy(cgroups)
    cmap = build_inode_map(hierarchy)
    column = Column(len(list_pids(host_proc)), cmap.containers)
    times = column.times
    synthetic = cgroups is not None
    with procfs_mount_answers_proc(host_proc if synthetic else None, cgroups):
        runner.run_cycle()  # warm-up: first-use imports (h2, http.client)
        gc.collect()
        gc.freeze()  # as ``selfcheck serve`` does after its first cycle (service.py)
        times["list_pids"] = timed(lambda: list_pids(host_proc), repeat)
        times["passwd sample"] = timed(
            lambda: passwd.sample_uids(host_proc, list_pids(host_proc), SAMPLE), repeat
        )
        times["origin_detection sample"] = timed(
            lambda: _sampler()(host_proc, 1, SAMPLE, None), repeat
        )
        times["inode map"] = timed(lambda: build_inode_map(hierarchy), repeat)
        times["sample + clients"] = timed(lambda: _sampler()(host_proc, 1, SAMPLE, cmap), repeat)
        times["procfs check"] = timed(lambda: procfs.run(CheckContext.of(config)), repeat)
        walls, cpus = [], []
        for _ in range(repeat):
            began, cpu = time.perf_counter(), cpu_now()
            snap = runner.run_cycle()
            walls.append(time.perf_counter() - began)
            cpus.append(cpu_now() - cpu)
        times["full cycle"] = median(walls)
        times["full cycle, best run"] = min(walls)
        times["cycle CPU"] = median(cpus)
        column.statuses = {cid: str(r.status) for cid, r in snap.results.items()}
        for cid, spec in checks.items():
            column.solo[cid] = timed(lambda spec=spec: spec.run(CheckContext.of(config)), repeat)  # type: ignore[misc]
    return column


@contextmanager
def tree_of(count: int) -> Iterator[tuple[Path, Path]]:
    """A proc tree of ``count`` processes and the cgroup tree its processes live in."""
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    directory = Path(tempfile.mkdtemp(prefix="sc-proctree-", dir=base))
    try:
        cgrouptree.generate(directory / "cgroup", count)
        yield proctree.generate(directory / "proc", count), directory / "cgroup"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def full_cycle(size: int, repeat: int, runtime: bool) -> dict[str, float]:
    """The full-cycle rows alone, on a tree of ``size`` processes (``--tree``'s child)."""
    with (
        workdir("cycle") as directory,
        answering_node(directory, runtime) as env,
        tree_of(size) as (tree, cgroups),
    ):
        env["DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT"] = "true"
        column = measure(tree, cgroups, env, repeat)
    keys = ("full cycle", "full cycle, best run", "cycle CPU")
    return {key: column.times[key] for key in keys} | {"bad": float(_bad(column))}


def _bad(column: Column) -> int:
    return sum(1 for s in column.statuses.values() if s not in ("ok", "degraded"))


def compare_trees(trees: list[Path], size: int, repeat: int, runtime: bool) -> None:
    """Each tree's full cycle in a fresh interpreter, side by side with the first's ratio."""
    rows: list[list[object]] = []
    first: dict[str, float] = {}
    for tree in trees:
        argv = [sys.executable, __file__, "--child", str(tree), "--sizes", str(size)]
        argv += ["--repeat", str(repeat)] + ([] if runtime else ["--no-runtime"])
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        got = json.loads(done.stdout.splitlines()[-1])
        first = first or got
        rows.append(
            [
                str(tree),
                ms(got["full cycle"]),
                ms(got["full cycle, best run"]),
                ms(got["cycle CPU"]),
                f"{got['full cycle'] / first['full cycle']:.2f}x",
                f"{got['cycle CPU'] / first['cycle CPU']:.2f}x",
                int(got["bad"]),
            ]
        )
    headers = ["source tree", "cycle ms", "best ms", "CPU ms", "cycle ratio", "CPU ratio"]
    print(table([*headers, "checks not ok"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--no-runtime", action="store_true", help="no containerd")
    parser.add_argument("--tree", type=Path, action="append", help="a source tree to compare")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(
            json.dumps(full_cycle(int(args.sizes.split(",")[0]), args.repeat, not args.no_runtime))
        )
        return
    if args.tree:
        print_header("Cycle time by source tree", "python bench/cycle.py " + " ".join(sys.argv[1:]))
        compare_trees(args.tree, int(args.sizes.split(",")[0]), args.repeat, not args.no_runtime)
        return
    logging.getLogger("selfcheck").addHandler(logging.NullHandler())
    logging.getLogger("selfcheck").propagate = False
    sizes = [int(s) for s in args.sizes.split(",")]
    print_header("Cycle time", "python bench/cycle.py " + " ".join(sys.argv[1:]))
    columns: dict[str, Column] = {}
    with workdir("cycle") as directory, answering_node(directory, not args.no_runtime) as env:
        env["DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT"] = "true"
        columns["real /proc"] = measure(Path("/proc"), None, env, args.repeat)
        for size in sizes:
            with tree_of(size) as (tree, cgroups):
                columns[f"{size:,}"] = measure(tree, cgroups, env, args.repeat)
    print_tables(columns, sizes)


def print_tables(columns: dict[str, Column], sizes: list[int]) -> None:
    names = list(columns)
    first, last = f"{sizes[0]:,}", f"{sizes[-1]:,}"
    rows: list[list[object]] = [
        ["processes", *(columns[n].processes for n in names), ""],
        ["container cgroups", *(columns[n].cgroups for n in names), ""],
    ]
    for key in ROWS:
        values = [columns[n].times[key] for n in names]
        growth = columns[last].times[key] / columns[first].times[key]
        rows.append([key, *(ms(v) for v in values), f"{growth:.1f}x"])
    print(table(["ms (median)", *names, f"{last} / {first}"], rows))
    print(f"\nprocess ratio {last} / {first}: {sizes[-1] / sizes[0]:.0f}x (linear growth)\n")
    checks = list(columns[names[0]].solo)
    detail: list[list[object]] = [
        [cid, *(ms(columns[n].solo[cid]) for n in names)] for cid in checks
    ]
    detail.append(["sum", *(ms(sum(columns[n].solo.values())) for n in names)])
    detail.append(["(statuses)", *(_statuses(columns[n]) for n in names)])
    print("Each check run alone, one after the other (ms, median): where the cycle's time goes.\n")
    print(table(["check", *names], detail))


def _statuses(column: Column) -> str:
    bad = [f"{cid}={s}" for cid, s in column.statuses.items() if s not in ("ok", "degraded")]
    return "all ok/degraded" if not bad else ", ".join(bad)


if __name__ == "__main__":
    main()
