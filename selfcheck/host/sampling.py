"""An evenly spaced sample of host processes, read with the Agent's rules and the clients'.

For each sampled process: its ``cgroup`` file by the Agent's PID-to-container rule
(DataDog/datadog-agent pkg/util/cgroups/pid_mapper.go), the cgroup inode its DogStatsD client
would send resolved through the Agent's inode map, and the container ID its client would find
(DataDog/datadog-go statsd/container_linux.go). The tallies are facts for the judges of
``selfcheck.checks.origin_detection``; nothing here decides a status.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from selfcheck.host.cgroup import (
    agent_cgroup_path,
    container_id_from_name,
    container_id_from_path,
    in_runtime_cgroup,
    last_element,
    parse_proc_cgroup,
    read_proc_cgroup,
)
from selfcheck.host.client_origin import (
    agent_recognises,
    client_id_from_cgroup,
    client_id_from_mountinfo,
)
from selfcheck.host.files import read_text
from selfcheck.host.inodes import InodeMap
from selfcheck.host.procfs import evenly_spaced, list_pids

MAX_EXAMPLES = 3
MOUNTINFO_CAP = 256 * 1024
STAT_CAP = 4096


@dataclass(frozen=True, slots=True)
class Sample:
    """Host processes read for the uds step 4 and what their clients would send, and its fate:
    one pass, one record. Only those under a runtime path are judged."""

    sampled: int = 0
    in_containers: int = 0
    resolved: int = 0
    unreadable: int = 0
    unresolved_examples: tuple[str, ...] = ()
    inode_resolved: int = 0
    id_found: int = 0
    id_recognised: int = 0
    from_mountinfo: int = 0
    inode_examples: tuple[str, ...] = ()
    id_examples: tuple[str, ...] = ()
    not_walked: int = 0
    """Unresolved inodes of a capped walk: the Agent, walking all, may know them."""
    inode_total: int | None = None
    """Processes whose inode was looked up (none without an inode map); ``in_containers``
    if unset."""
    named_misses: int = 0
    """Unresolved inodes of container-named directories: a fresh walk may hold them."""

    @property
    def ratio(self) -> float | None:
        return self.resolved / self.in_containers if self.in_containers else None

    @property
    def inode_judged(self) -> int:
        total = self.in_containers if self.inode_total is None else self.inode_total
        return total - self.not_walked

    @property
    def inode_ratio(self) -> float | None:
        return self.inode_resolved / self.inode_judged if self.inode_judged else None

    @property
    def id_ratio(self) -> float | None:
        return self.id_recognised / self.in_containers if self.in_containers else None


@dataclass(slots=True)
class _Tally:
    """Counters for one pass over the sample, shared by the uds and client mechanisms."""

    in_containers: int = 0
    resolved: int = 0
    unreadable: int = 0
    examples: list[str] = field(default_factory=list)
    inode_resolved: int = 0
    id_found: int = 0
    id_recognised: int = 0
    from_mountinfo: int = 0
    not_walked: int = 0
    named_misses: int = 0
    inode_examples: list[str] = field(default_factory=list)
    id_examples: list[str] = field(default_factory=list)


def _client_inode(hierarchy: str, path: str, inode_map: InodeMap) -> int | None:
    """The inode of the directory ``path`` names in the host tree.

    A path read from a private cgroup namespace is relative to it (``/../<id>``); the
    directory's name alone then places it: only container-named directories are in the
    Agent's map, and the map knows each by its ID.
    """
    if "/.." in path or path.startswith(".."):
        cid = container_id_from_name(last_element(path))
        return inode_map.by_id.get(cid) if cid else None
    try:
        return os.stat(hierarchy + path).st_ino  # noqa: PTH116 - per sampled process
    except OSError:
        return None


def _judge_client_inode(tally: _Tally, path: str | None, inode_map: InodeMap) -> None:
    inode = _client_inode(inode_map.hierarchy, path, inode_map) if path is not None else None
    if inode is not None and inode in inode_map.by_inode:
        tally.inode_resolved += 1
    elif inode_map.truncated:
        tally.not_walked += 1  # maybe past the walk's cap: neither proof nor failure
    else:
        if path is not None and container_id_from_path(path):
            tally.named_misses += 1  # a container's directory a newer walk would hold
        if len(tally.inode_examples) < MAX_EXAMPLES:
            tally.inode_examples.append(f"{path} (inode {inode})")


def _judge_client_id(tally: _Tally, proc_root: Path, pid: int, text: str, path: str | None) -> None:
    client_id = client_id_from_cgroup(text)
    if client_id is None:
        try:
            mountinfo = read_text(f"{proc_root}/{pid}/mountinfo", MOUNTINFO_CAP)
        except OSError:
            mountinfo = ""
        client_id = client_id_from_mountinfo(mountinfo)
        tally.from_mountinfo += client_id is not None
    tally.id_found += client_id is not None
    if client_id is not None and agent_recognises(client_id):
        tally.id_recognised += 1
    elif len(tally.id_examples) < MAX_EXAMPLES:
        tally.id_examples.append(f"{path}: sends {client_id or 'no ID'}")


PF_EXITING = 0x4
"""``task_struct.flags`` bit set from the start of ``exit()`` (include/linux/sched.h)."""


def exiting(proc_root: Path, pid: int) -> bool:
    """Whether ``pid`` is exiting or a zombie (or already gone).

    Past ``cgroup_exit`` (kernel/cgroup/cgroup.c) in its exit, until its parent reaps it, a
    process's ``cgroup`` file shows ``/`` on every v1 line while the unified line keeps its
    container's path. Counted, it would look like a container process the Agent cannot map;
    it sends nothing. Asked only of unmapped processes: one small read, and rarely.
    """
    try:
        text = read_text(f"{proc_root}/{pid}/stat", STAT_CAP)
    except OSError:
        return True
    fields = text.rpartition(")")[2].split()
    return len(fields) > 6 and fields[6].isdigit() and bool(int(fields[6]) & PF_EXITING)


def sample_all(
    proc_root: Path,
    cgroup_version: int,
    size: int,
    inode_map: InodeMap | None = None,
    host_pids: list[int] | None = None,
) -> Sample:
    """One pass over an evenly spaced sample: the Agent's PID rule and the clients' rules."""
    pids = evenly_spaced(list_pids(proc_root) if host_pids is None else host_pids, size)
    tally = _Tally()
    for pid in pids:
        try:
            text = read_proc_cgroup(proc_root, pid)
        except OSError:
            tally.unreadable += 1
            continue
        lines = parse_proc_cgroup(text)
        if not in_runtime_cgroup(lines):
            continue
        path = agent_cgroup_path(lines, cgroup_version)
        resolved = path is not None and container_id_from_path(path) is not None
        if not resolved and exiting(proc_root, pid):
            tally.unreadable += 1  # gone in all but name: no client sends from it any more
            continue
        tally.in_containers += 1
        if resolved:
            tally.resolved += 1
        elif len(tally.examples) < MAX_EXAMPLES:
            tally.examples.append(
                path if path is not None else "(no line for the Agent's controller)"
            )
        if inode_map is not None:
            _judge_client_inode(tally, path, inode_map)
        _judge_client_id(tally, proc_root, pid, text, path)
    return Sample(
        len(pids),
        tally.in_containers,
        tally.resolved,
        tally.unreadable,
        tuple(tally.examples),
        tally.inode_resolved,
        tally.id_found,
        tally.id_recognised,
        tally.from_mountinfo,
        tuple(tally.inode_examples),
        tuple(tally.id_examples),
        tally.not_walked,
        tally.in_containers if inode_map is not None else 0,
        tally.named_misses,
    )
