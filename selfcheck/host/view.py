"""One reading of the host per cycle, rooted where the viewed container's files are.

Every path a check uses is resolved inside the root of the container whose eyes the cycle
looks through (``selfcheck.host.eyes``): the Agent container's at ``<procfs>/<pid>/root``, or
``/`` for selfcheck's own; a fixture directory in tests. Several checks look at the same
facts: the viewed container's mount table (procfs, cgroups, security, origin detection), the
host process listing (procfs, passwd, origin detection) and the cgroup layout and tree
(cgroups, origin detection). Read separately, a cycle parsed ``mountinfo`` four times and listed
``/host/proc`` three times. ``HostView`` reads each fact at most once, the first time a check
asks for it (a check that is skipped costs nothing), and hands the same value to the next.

The view only reads, it never judges. Errors from the host are data: every member returns its
value or the ``OSError`` that prevented it, and the judge maps that to a reason. Checks run in
their own threads, so each member is computed under its own lock: a second check asking for
the same fact waits for the first reading instead of repeating it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from selfcheck.host.cgroup import (
    CgroupLayout,
    CgroupLine,
    CgroupTree,
    detect_layout,
    host_prefix,
    parse_proc_cgroup,
    read_proc_cgroup,
    walk_cgroup_tree,
)
from selfcheck.host.eyes import Eyes, own_eyes
from selfcheck.host.namespaces import namespace_inode
from selfcheck.host.procfs import Mount, list_pids, read_mountinfo

T = TypeVar("T")
TREE_MAX_AGE = 300.0
"""Seconds a walked cgroup tree is reused across cycles at most (see ``TreeCache``)."""


class TreeCache:
    """The host cgroup tree kept from one cycle to the next, like the Agent's inode map.

    The Agent builds its inode-to-container map by walking the host tree and walks again only
    on a miss (DataDog/datadog-agent pkg/util/containers/metrics/system/collector_linux.go
    ``GetContainerIDForInode``). Walking a thousand directories is most of a cycle, so a
    cycle reuses the last walk of the same hierarchy for ``TREE_MAX_AGE`` seconds, and a check
    that misses (its own cgroup, a client's inode) asks for a fresh one
    (``HostView.refresh_cgroup_tree``): at most one walk per cycle either way.
    """

    def __init__(self, max_age: float = TREE_MAX_AGE) -> None:
        self.max_age = max_age
        self._trees: dict[str, tuple[CgroupTree, float]] = {}
        self._lock = threading.Lock()

    def get(self, top: str) -> CgroupTree | None:
        with self._lock:
            kept = self._trees.get(top)
        if kept is None or time.monotonic() - kept[1] > self.max_age:
            return None
        return kept[0]

    def put(self, tree: CgroupTree) -> None:
        with self._lock:
            self._trees = {tree.top: (tree, time.monotonic())}


@dataclass(frozen=True, slots=True)
class HeldSockets:
    """The socket inodes the Agent's processes hold, as the helper holding the Agent's uid read
    them (``/proc/<pid>/fd`` needs ptrace read access, which a root server lacks beside a
    UID-100 Agent, and so does following its root to connect to a socket path): ``held`` maps
    inode to PID, ``unreadable`` lists the PIDs it could not read."""

    held: Mapping[int, int]
    unreadable: tuple[int, ...]
    probes: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Socket path as the Agent names it -> (listener verdict, note) of a connect there as the
    Agent (``selfcheck.host.agent.probe_file``)."""


class HostView:
    """The host as this cycle sees it: the configured host mounts, inside ``eyes``'s root.

    ``host_proc`` and ``cgroup_root`` are where *this* process opens the mounts the viewed
    container names ``config.host_proc`` and ``config.cgroup_root``; ``at`` does the same for
    any other path a check uses (a socket, os-release, passwd). The mount table, cgroup lines
    and cgroup namespace are the viewed process's (the Agent's in its view, this process's
    own otherwise), so mount points and cgroup paths are as that container names them.
    """

    def __init__(
        self,
        host_proc: Path,
        cgroup_root: Path,
        eyes: Eyes | None = None,
        trees: TreeCache | None = None,
    ) -> None:
        self.eyes = eyes if eyes is not None else own_eyes("")
        self.trees = trees
        self._tree_reused = False
        self.root = self.eyes.root
        self.cgroup_root_name = cgroup_root
        self.host_proc = self.root.at(host_proc)
        self.cgroup_root = self.root.at(cgroup_root)
        self._values: dict[str, object] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.agent_sockets: HeldSockets | None = None
        """The Agent's sockets as the helper read them, when one holds its credentials."""

    def at(self, path: str | os.PathLike[str]) -> Path:
        """Where this process opens the viewed container's ``path`` (links resolved inside)."""
        return self.root.at(path)

    def _once(self, key: str, read: Callable[[], T]) -> T | OSError:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                try:
                    self._values[key] = read()
                except OSError as error:
                    self._values[key] = error
            return self._values[key]  # type: ignore[return-value]

    def own_mounts(self) -> list[Mount] | OSError:
        """The viewed container's mount table, mount points as it names them."""
        return self._once("own_mounts", lambda: read_mountinfo(self.eyes.proc, self.eyes.pid))

    def host_pids(self) -> list[int] | OSError:
        """The numeric entries of the host procfs, sorted."""
        return self._once("host_pids", lambda: list_pids(self.host_proc))

    def own_cgroup_lines(self) -> list[CgroupLine] | OSError:
        """The viewed process's cgroups, relative to its cgroup namespace."""
        return self._once(
            "own_cgroup",
            lambda: parse_proc_cgroup(read_proc_cgroup(self.eyes.proc, self.eyes.pid)),
        )

    def cgroup_namespace_inode(self) -> int | OSError:
        return self._once(
            "cgroup_ns", lambda: namespace_inode("cgroup", self.eyes.proc, self.eyes.pid)
        )

    def cgroup_layout(self) -> CgroupLayout | OSError:
        """The cgroup version and mount points, by the Agent's rule over the viewed mount
        table; the mount points are returned where this process opens them."""
        return self._once("layout", self._read_layout)

    def _read_layout(self) -> CgroupLayout:
        os.scandir(self.cgroup_root).close()  # the root itself: ENOENT/EACCES name the mount
        mounts = self.own_mounts()
        if isinstance(mounts, OSError):
            raise mounts
        layout = detect_layout(mounts, host_prefix(self.root.resolve(self.cgroup_root_name)))
        if self.root.is_own:
            return layout
        v2 = str(self.at(layout.v2_mount)) if layout.v2_mount is not None else None
        v1 = {name: str(self.at(point)) for name, point in layout.v1_controllers.items()}
        return CgroupLayout(layout.version, v1, v2)

    def cgroup_tree(self) -> CgroupTree | OSError:
        """Every directory of the hierarchy the Agent walks, with inodes (bounded): the last
        cycle's walk when the cache holds a recent one, else walked now."""
        return self._once("tree", self._read_tree)

    def refresh_cgroup_tree(self) -> CgroupTree | OSError:
        """A fresh walk after a miss in a reused tree; the same tree when it is fresh already."""
        current = self.cgroup_tree()
        if isinstance(current, OSError) or not self._tree_reused:
            return current
        with self._guard:
            self._tree_reused = False
            self._values.pop("tree", None)
        return self._once("tree", lambda: self._walk(current.top))

    def _read_tree(self) -> CgroupTree:
        layout = self.cgroup_layout()
        if isinstance(layout, OSError):
            raise layout
        if layout.top is None:
            raise FileNotFoundError(2, "no cgroup hierarchy for the Agent", str(self.cgroup_root))
        kept = self.trees.get(layout.top) if self.trees is not None else None
        if kept is not None:
            self._tree_reused = True
            return kept
        return self._walk(layout.top)

    def _walk(self, top: str) -> CgroupTree:
        tree = walk_cgroup_tree(top)
        if self.trees is not None:
            self.trees.put(tree)
        return tree
