"""The Agent's cgroup-inode-to-container map, built the way the Agent builds it.

A DogStatsD or APM client in a private cgroup namespace cannot name its container, so it sends
``c:in-<inode>``: the inode of its own cgroup directory (datadog-go container_linux.go). The
Agent turns that inode back into a container with a map it builds by walking the host cgroup tree
(pkg/util/cgroups/reader.go ``RefreshCgroups``, readerv2.go and readerv1.go ``parseCgroups``,
``GetContainerIDForInode``): the whole tree under the unified mount on cgroup v2, under the
``memory`` hierarchy on v1 (hybrid included), in lexical order; every directory whose *name*
passes the Agent's ``ContainerFilter`` is kept under its container ID (a later directory with
the same ID replaces an earlier one), and each kept directory is ``stat``-ed, inodes 0 to 2
being ignored.

The Agent walks without limit; this reader caps the directories it lists and the depth it
descends, and says when it stopped, so a node with tens of thousands of cgroups costs a bounded
time and an unresolved inode past the cap is reported as "not walked", not as a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from selfcheck.host.cgroup import CgroupLayout, container_id_from_name

MAX_DIRS = 8_000
"""About 70 ms of walking here (bench/cycle.py); a node at the kubelet's default of 110 pods has
well under 1,000 cgroup directories, a kind node's nested ones included."""
MAX_DEPTH = 12
MIN_INODE = 3
"""0 is no inode, 1 the bad-blocks inode, 2 a file system's root (datadogpy says so too)."""


@dataclass(frozen=True, slots=True)
class InodeMap:
    """Container cgroups found under ``hierarchy``: by inode (what ``in-`` resolves through)."""

    hierarchy: str
    by_inode: Mapping[int, str] = field(default_factory=dict)
    by_id: Mapping[str, int] = field(default_factory=dict)
    dirs_walked: int = 0
    truncated: bool = False
    unreadable: int = 0

    @property
    def containers(self) -> int:
        return len(self.by_id)


def agent_hierarchy(layout: CgroupLayout) -> str | None:
    """The directory the Agent walks: the memory hierarchy on v1 and hybrid, else the v2 mount."""
    if layout.version in ("v1", "hybrid"):
        return layout.v1_controllers.get("memory")
    if layout.version == "v2":
        return layout.v2_mount
    return None


def _children(path: str) -> list[os.DirEntry[str]] | None:
    try:
        with os.scandir(path) as entries:
            dirs = [e for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return None
    dirs.sort(key=lambda e: e.name)
    return dirs


def _keep(entry: os.DirEntry[str], by_id: dict[str, int]) -> None:
    cid = container_id_from_name(entry.name)
    if cid is None:
        return
    try:
        inode = entry.stat(follow_symlinks=False).st_ino
    except OSError:
        inode = 0
    by_id.pop(cid, None)  # a later directory with the same ID replaces the earlier one
    by_id[cid] = inode


def build_inode_map(
    hierarchy: str, max_dirs: int = MAX_DIRS, max_depth: int = MAX_DEPTH
) -> InodeMap:
    """Walk ``hierarchy`` pre-order in lexical order, as Go's ``filepath.WalkDir`` does.

    A directory's name is judged when it is visited, before its subtree and before its
    later siblings, so the same ID met twice keeps the later directory as in the Agent. A
    directory that cannot be listed is skipped (the Agent skips permission errors) and
    counted in ``unreadable``. Only kept directories are ``stat``-ed, like the Agent.
    """
    by_id: dict[str, int] = {}
    walked = unreadable = 0
    truncated = False
    stack: list[tuple[os.DirEntry[str] | None, str, int]] = [(None, hierarchy, 0)]
    while stack:
        entry, path, depth = stack.pop()
        if entry is not None:
            walked += 1
            if walked > max_dirs:
                truncated, walked = True, max_dirs
                break
            _keep(entry, by_id)
        children = _children(path)
        if children is None:
            unreadable += 1
        elif children and depth >= max_depth:
            truncated = True
        elif children:
            stack.extend((child, child.path, depth + 1) for child in reversed(children))
    by_inode = {inode: cid for cid, inode in by_id.items() if inode >= MIN_INODE}
    return InodeMap(hierarchy, by_inode, by_id, walked, truncated, unreadable)


def inode_map_from_dirs(
    hierarchy: str,
    dirs: Iterable[tuple[str, str, int]],
    *,
    walked: int,
    truncated: bool,
) -> InodeMap:
    """The same map from directories another reader listed: ``(path, name, inode)`` each.

    For a once-per-cycle tree read shared with other checks (in any order): sorting by path
    elements gives the walk's lexical pre-order, so the same ID met twice keeps the later
    directory as in the Agent. The inode should be the directory's ``stat`` inode (on cgroupfs
    ``getdents`` gives the same one).
    """
    by_id: dict[str, int] = {}
    for _path, name, inode in sorted(dirs, key=lambda d: d[0].split("/")):
        cid = container_id_from_name(name)
        if cid is not None:
            by_id.pop(cid, None)
            by_id[cid] = inode
    by_inode = {inode: cid for cid, inode in by_id.items() if inode >= MIN_INODE}
    return InodeMap(hierarchy, by_inode, by_id, walked, truncated)
