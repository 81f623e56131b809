"""cgroup readers and the Agent's container-ID rule, in one place for every check.

The container-ID rule mirrors the Agent's PID-to-container lookup exactly
(pkg/util/cgroups/pid_mapper.go ``IdentiferFromCgroupReferences`` with ``ContainerFilter``
from reader.go; FACTS.md 2.3), because a looser or stricter rule here would prove something
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

# pkg/util/cgroups/reader.go ContainerRegexpStr, character for character: the usual 64-hex ID,
# the ECS task form ``<32 hex>-<digits>`` (added in newer Agents) and Garden's 8-4-4-4-4 form,
# anchored at the end so that a pod UID (8-4-4-4-12) never matches.
CONTAINER_ID_RE = re.compile(r"([0-9a-f]{64})|([0-9a-f]{32}-\d+)|([0-9a-f]{8}(-[0-9a-f]{4}){4}$)")

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


def container_id_from_proc_cgroup(text: str, cgroup_version: int) -> str | None:
    """The container ID the Agent gives a PID whose ``/proc/<pid>/cgroup`` reads ``text``.

    This is the whole rule of FACTS.md 2.3: take the line whose controller field is ``memory``
    (cgroup v1, hybrid included) or empty (v2), keep only the last element of its path, drop
    ``*.mount`` and ``crio-conmon-*`` names, and match the Agent's regex. ``None`` means the
    Agent sends that PID's metrics without container tags (and does not count an error).
    """
    path = agent_cgroup_path(parse_proc_cgroup(text), cgroup_version)
    return container_id_from_path(path) if path is not None else None


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
    """Which cgroup hierarchies are mounted under the host cgroup root, per the Agent's rules.

    ``version`` is ``v1`` (controllers mounted separately), ``v2`` (one unified mount at the
    root), ``hybrid`` (v1 controllers plus a cgroup2 mount, e.g. ``unified``; the Agent reads
    it as v1) or ``none``.
    """

    version: str
    v1_controllers: dict[str, str]
    v2_mount: str | None

    @property
    def agent_version(self) -> int:
        """The version the Agent's reader uses: hybrid reads as v1."""
        return 2 if self.version == "v2" else 1


def detect_layout(mounts: list[Mount], cgroup_root: str) -> CgroupLayout:
    """Mirror pkg/util/cgroups/reader_detector.go: only cgroup mounts under the root count."""
    root = cgroup_root.rstrip("/") or "/"
    v1: dict[str, str] = {}
    v2: str | None = None
    for mount in mounts:
        point = mount.mount_point
        if point != root and not point.startswith(root + "/"):
            continue
        if mount.fstype == "cgroup":
            for option in mount.super_options:
                if option not in ("rw", "ro") and not option.startswith("release_agent"):
                    v1.setdefault(option.removeprefix("name="), point)
        elif mount.fstype == "cgroup2" and (v2 is None or point == root):
            v2 = point
    if v1:
        version = "hybrid" if v2 is not None else "v1"
    elif v2 is not None and v2 == root:
        version = "v2"
    else:
        version = "none"
    return CgroupLayout(version, v1, v2)


SCAN_MAX_DIRS = 20_000
SCAN_MAX_DEPTH = 8


def count_container_cgroups(top: Path) -> tuple[int, bool]:
    """Container cgroups under ``top`` by the Agent's name rule; bounded in size and depth."""
    count, seen = 0, 0
    stack: list[tuple[Path, int]] = [(top, 0)]
    while stack:
        path, depth = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            seen += 1
            if seen > SCAN_MAX_DIRS:
                return count, True
            if container_id_from_name(entry.name):
                count += 1
            elif depth < SCAN_MAX_DEPTH:
                stack.append((Path(entry.path), depth + 1))
    return count, False
