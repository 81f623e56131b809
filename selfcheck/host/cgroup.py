"""cgroup readers and the Agent's container-ID rule, in one place for every check.

The container-ID rule mirrors the Agent's PID-to-container lookup exactly
(pkg/util/cgroups/pid_mapper.go ``IdentiferFromCgroupReferences`` with ``ContainerFilter``
from reader.go), because a looser or stricter rule here would prove something
the Agent does not do.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from selfcheck.host.files import read_text
from selfcheck.host.procfs import Mount

CGROUP_CAP = 64 * 1024

# pkg/util/cgroups/reader.go ContainerRegexpStr: the usual 64-hex ID, the ECS task form
# ``<32 hex>-<digits>`` (added in newer Agents) and Garden's 8-4-4-4-4 form, anchored at the
# end so that a pod UID (8-4-4-4-12) never matches. Written for Go's semantics, not Python's:
# Go's ``\d`` is ASCII only (Python's matches any Unicode digit) and Go's ``$`` without (?m)
# matches only at the very end (Python's also before a trailing newline), hence [0-9] and \Z.
CONTAINER_ID_RE = re.compile(
    r"([0-9a-f]{64})|([0-9a-f]{32}-[0-9]+)|([0-9a-f]{8}(-[0-9a-f]{4}){4}\Z)"
)

# The controller field the Agent's system collector passes as its base controller.
AGENT_V1_CONTROLLER = "memory"
AGENT_V2_CONTROLLER = ""

# Path elements that mark a cgroup as made by a pod or container runtime: the kubelet's pod
# hierarchy (cgroupfs ``kubepods``, systemd ``kubepods*.slice``), Docker (cgroupfs ``docker``,
# systemd ``docker-<id>.scope``), containerd, CRI-O, Podman, ECS, Garden and LXC.
_RUNTIME_ELEMENTS = frozenset({"docker", "ecs", "garden", "lxc", "libpod_parent"})
_RUNTIME_PREFIXES = ("kubepods", "docker-", "cri-containerd-", "crio-", "libpod-")


class CgroupLine(NamedTuple):
    """One line of ``/proc/<pid>/cgroup``: ``hierarchy-ID:controller-list:path``.

    A NamedTuple rather than a frozen dataclass: the sampled scans build thousands per cycle
    and a frozen dataclass's constructor was half the parse time (bench/cycle.py profile).
    """

    hierarchy: str
    controllers: tuple[str, ...]
    path: str

    @property
    def controller_field(self) -> str:
        """The middle field as written (``memory``, ``cpu,cpuacct``, empty on v2)."""
        return ",".join(self.controllers)


def parse_proc_cgroup(text: str) -> list[CgroupLine]:
    """Lines that do not have three colon-separated fields are skipped, not fatal.

    Lines end at ``\\n`` only (with a trailing ``\\r`` dropped), as the Agent's line scanner
    splits them; ``str.splitlines`` would also split a path at other control characters.
    """
    lines: list[CgroupLine] = []
    for raw in text.split("\n"):
        parts = raw.removesuffix("\r").split(":", 2)
        if len(parts) != 3:
            continue
        controllers = tuple(filter(None, parts[1].split(",")))  # half the cost of a genexpr
        lines.append(CgroupLine(parts[0], controllers, parts[2]))
    return lines


def agent_cgroup_path(lines: list[CgroupLine], cgroup_version: int) -> str | None:
    """The path on the line the Agent's PID mapper reads, or ``None`` when there is none.

    The Agent keeps the first line whose controller field *equals* its base controller:
    ``memory`` on v1 (so a ``cpu,memory`` co-mount is not read) and the empty field on v2.
    """
    wanted = AGENT_V1_CONTROLLER if cgroup_version == 1 else AGENT_V2_CONTROLLER
    for line in lines:
        if line.controller_field == wanted:
            return line.path
    return None


def container_id_from_name(name: str) -> str | None:
    """The Agent's ``ContainerFilter`` applied to one cgroup path element.

    Names ending in ``.mount`` (systemd mount units) and starting with ``crio-conmon-`` (the
    CRI-O monitor process) are ignored; otherwise the leftmost match of the Agent's regex
    wins, so ``cri-containerd-<id>.scope``, ``crio-<id>.scope``, ``docker-<id>.scope`` and a
    bare ``<id>`` all resolve, while ``pod<uid>`` does not.
    """
    if not name or name.endswith(".mount") or name.startswith("crio-conmon-"):
        return None
    match = CONTAINER_ID_RE.search(name)
    return match.group(0) if match else None


def last_element(path: str) -> str:
    """Go's ``filepath.Base(strings.TrimLeft(path, "/"))``: ``.`` for the root."""
    relative = path.lstrip("/").rstrip("/")
    return posixpath.basename(relative) if relative else "."


def container_id_from_path(path: str) -> str | None:
    """Only the last path element is considered, exactly like the Agent."""
    return container_id_from_name(last_element(path))


def is_runtime_path(path: str) -> bool:
    """Whether a cgroup path lies under a pod or container runtime hierarchy.

    An element resolving to a container ID counts too (``/actions_job/<id>``). Paths whose
    last element the Agent deliberately ignores (``crio-conmon-*``, ``*.mount``) do not: those
    hold runtime helpers, not container processes. ``..`` elements (a reader in a private
    cgroup namespace) are skipped.
    """
    name = last_element(path)
    if name.endswith(".mount") or name.startswith("crio-conmon-"):
        return False
    for element in path.split("/"):
        if element in ("", ".", ".."):
            continue
        if element in _RUNTIME_ELEMENTS or element.startswith(_RUNTIME_PREFIXES):
            return True
        if container_id_from_name(element):
            return True
    return False


def read_proc_cgroup(proc_root: Path, pid: int | str) -> str:
    """``<proc>/<pid>/cgroup``; raises ``OSError`` (``ENOENT`` when the process is gone)."""
    return read_text(f"{proc_root}/{pid}/cgroup", CGROUP_CAP)


def in_runtime_cgroup(lines: list[CgroupLine]) -> bool:
    """Whether any hierarchy places the process under a pod or container runtime path.

    Each distinct path is judged once: on cgroup v1 all 13 lines usually carry the same one.
    """
    return any(is_runtime_path(path) for path in dict.fromkeys(line.path for line in lines))


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """Which cgroup hierarchies the Agent finds under its host prefix (reader_detector.go).

    ``version`` is ``v1`` (more than one v1 controller mounted), ``v2`` (a cgroup2 mount and
    no v1 controller), ``hybrid`` (v1 controllers plus a cgroup2 mount such as ``unified``;
    the Agent reads it as v1) or ``none`` (the Agent cannot detect a version).
    """

    version: str
    v1_controllers: dict[str, str]
    v2_mount: str | None

    @property
    def agent_version(self) -> int:
        """The version the Agent's reader uses: hybrid reads as v1."""
        return 2 if self.version == "v2" else 1

    @property
    def top(self) -> str | None:
        """The hierarchy the Agent walks for containers: v2's mount, or v1's memory one."""
        if self.version == "v2":
            return self.v2_mount
        return self.v1_controllers.get(AGENT_V1_CONTROLLER)


def host_prefix(cgroup_root: str) -> str:
    """The Agent filters cgroup mounts by the ``/host`` prefix when containerized; a root
    elsewhere (a bare machine, a custom ``DD_CONTAINER_CGROUP_ROOT``) is its own prefix."""
    return "/host" if cgroup_root.startswith("/host/") else cgroup_root.rstrip("/") or "/"


def detect_layout(mounts: list[Mount], prefix: str) -> CgroupLayout:
    """pkg/util/cgroups/reader_detector.go ``discoverCgroupMountPoints``, rule for rule.

    Only ``cgroup*`` mounts whose mount point starts with the prefix (a plain string prefix,
    as Go's ``strings.HasPrefix``) count. A v1 mount names its controllers by the mount
    point's base name split at commas (``cpu,cpuacct``); when one controller is mounted at
    several points the shortest path wins; the last cgroup2 mount is the v2 one. v2 needs no
    v1 controller at all, v1 needs more than one (``isCgroup1``).
    """
    v1: dict[str, str] = {}
    v2: str | None = None
    for mount in mounts:
        point = mount.mount_point
        if not mount.fstype.startswith("cgroup") or not point.startswith(prefix):
            continue
        if mount.fstype == "cgroup":
            for target in posixpath.basename(point).split(","):
                previous = v1.get(target)
                if previous is None or len(point) < len(previous):
                    v1[target] = point
        elif mount.fstype == "cgroup2":
            v2 = point
    if not v1 and v2 is not None:
        return CgroupLayout("v2", {}, v2)
    if len(v1) > 1:
        return CgroupLayout("hybrid" if v2 is not None else "v1", v1, v2)
    return CgroupLayout("none", v1, v2)


SCAN_MAX_DIRS = 20_000
SCAN_MAX_DEPTH = 8


class CgroupDir(NamedTuple):
    """One directory of the host cgroup tree: its path under the top, name and inode."""

    path: str
    name: str
    inode: int


@dataclass(frozen=True, slots=True)
class CgroupTree:
    """The host cgroup hierarchy the Agent walks, read once per cycle and bounded.

    ``dirs`` holds every directory (the top itself as ``/``) up to ``SCAN_MAX_DIRS`` and
    ``SCAN_MAX_DEPTH``; ``truncated`` says a bound was hit.
    """

    top: str
    dirs: tuple[CgroupDir, ...]
    truncated: bool

    def container_dirs(self) -> list[CgroupDir]:
        """Directories the Agent's name filter keeps (pkg/util/cgroups/reader.go)."""
        return [d for d in self.dirs if container_id_from_name(d.name)]

    def by_inode(self) -> dict[int, CgroupDir]:
        return {d.inode: d for d in self.dirs}


def walk_cgroup_tree(top: str) -> CgroupTree:
    """Every directory below ``top`` with its inode (from ``getdents``, no ``stat`` each)."""
    root_inode = Path(top).stat().st_ino
    dirs: list[CgroupDir] = [CgroupDir("/", ".", root_inode)]
    stack: list[tuple[str, str, int]] = [(top, "", 0)]
    while stack:
        path, relative, depth = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if len(dirs) >= SCAN_MAX_DIRS:
                return CgroupTree(top, tuple(dirs), True)
            child = f"{relative}/{entry.name}"
            dirs.append(CgroupDir(child, entry.name, entry.inode()))
            if depth + 1 < SCAN_MAX_DEPTH:
                stack.append((entry.path, child, depth + 1))
    return CgroupTree(top, tuple(dirs), False)
