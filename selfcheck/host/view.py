"""One reading of the host per cycle, shared by every check that needs it.

Several checks look at the same facts: this process's mount table (procfs, cgroups,
security, origin detection), the host process listing (procfs, passwd, origin detection), the
cgroup layout and tree (cgroups, origin detection) and whether this process shares the host
procfs's PID namespace. Read separately, a cycle parsed ``mountinfo`` four times and listed
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
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from selfcheck.host.cgroup import (
    CGROUP_CAP,
    CgroupLayout,
    CgroupLine,
    CgroupTree,
    detect_layout,
    host_prefix,
    parse_proc_cgroup,
    walk_cgroup_tree,
)
from selfcheck.host.files import read_text
from selfcheck.host.namespaces import PidView, namespace_inode, read_pid_view
from selfcheck.host.procfs import Mount, list_pids, read_mountinfo

T = TypeVar("T")
OWN_PROC = Path("/proc")


class HostView:
    """The host as this cycle sees it, rooted at the configured host mounts."""

    def __init__(self, host_proc: Path, cgroup_root: Path, own_proc: Path = OWN_PROC) -> None:
        self.host_proc = host_proc
        self.cgroup_root = cgroup_root
        self.own_proc = own_proc
        self._values: dict[str, object] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

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
        """This process's mount table: the pod's mounts, as the Agent container has them."""
        return self._once("own_mounts", lambda: read_mountinfo(self.own_proc))

    def host_pids(self) -> list[int] | OSError:
        """The numeric entries of the host procfs, sorted."""
        return self._once("host_pids", lambda: list_pids(self.host_proc))

    def pid_view(self) -> PidView | OSError:
        """How the host procfs sees this process: the host-PID verdict's evidence."""
        return self._once("pid_view", lambda: read_pid_view(self.host_proc))

    def own_cgroup_lines(self) -> list[CgroupLine] | OSError:
        """``/proc/self/cgroup``: this process's cgroups, relative to its cgroup namespace."""
        return self._once(
            "own_cgroup",
            lambda: parse_proc_cgroup(read_text(self.own_proc / "self" / "cgroup", CGROUP_CAP)),
        )

    def cgroup_namespace_inode(self) -> int | OSError:
        return self._once("cgroup_ns", lambda: namespace_inode("cgroup", self.own_proc))

    def cgroup_layout(self) -> CgroupLayout | OSError:
        """The cgroup version and mount points, by the Agent's rule over this mount table."""
        return self._once("layout", self._read_layout)

    def _read_layout(self) -> CgroupLayout:
        os.scandir(self.cgroup_root).close()  # the root itself: ENOENT/EACCES name the mount
        mounts = self.own_mounts()
        if isinstance(mounts, OSError):
            raise mounts
        return detect_layout(mounts, host_prefix(os.path.realpath(self.cgroup_root)))

    def cgroup_tree(self) -> CgroupTree | OSError:
        """Every directory of the hierarchy the Agent walks, with inodes (bounded)."""
        return self._once("tree", self._read_tree)

    def _read_tree(self) -> CgroupTree:
        layout = self.cgroup_layout()
        if isinstance(layout, OSError):
            raise layout
        if layout.top is None:
            raise FileNotFoundError(2, "no cgroup hierarchy for the Agent", str(self.cgroup_root))
        return walk_cgroup_tree(layout.top)
