"""cgroup readers and the Agent's container-ID rule, in one place for every check."""

from __future__ import annotations

import re
from dataclasses import dataclass

from selfcheck.host.procfs import Mount

CGROUP_CAP = 64 * 1024

# pkg/util/cgroups/reader.go ContainerRegexpStr, plus the ECS task form newer Agents add.
CONTAINER_ID_RE = re.compile(
    r"([0-9a-f]{64})|([0-9a-f]{8}(-[0-9a-f]{4}){4}$)|([0-9a-f]{32}-\d+)"
)


@dataclass(frozen=True, slots=True)
class CgroupLine:
    """One line of ``/proc/<pid>/cgroup``: ``hierarchy-ID:controller-list:path``."""

    hierarchy: str
    controllers: tuple[str, ...]
    path: str


def parse_proc_cgroup(text: str) -> list[CgroupLine]:
    """Lines that do not have three colon-separated fields are skipped, not fatal."""
    lines: list[CgroupLine] = []
    for raw in text.splitlines():
        parts = raw.split(":", 2)
        if len(parts) != 3:
            continue
        controllers = tuple(c for c in parts[1].split(",") if c)
        lines.append(CgroupLine(parts[0], controllers, parts[2]))
    return lines


def agent_cgroup_path(lines: list[CgroupLine], cgroup_version: int) -> str | None:
    """The line the Agent's PID mapper reads: ``memory`` on v1, the empty controller on v2."""
    for line in lines:
        if cgroup_version == 1 and "memory" in line.controllers:
            return line.path
        if cgroup_version != 1 and not line.controllers and line.hierarchy == "0":
            return line.path
    return None


def container_id_from_name(name: str) -> str | None:
    """The Agent's container filter applied to one cgroup path element.

    Names ending in ``.mount`` (systemd mount units) and starting with ``crio-conmon-`` (the
    CRI-O monitor process) are ignored; otherwise the leftmost match of the Agent's regex
    wins, so ``cri-containerd-<id>.scope``, ``crio-<id>.scope``, ``docker-<id>.scope`` and a
    bare ``<id>`` all resolve, while ``pod<uid>`` does not.
    """
    if not name or name.endswith(".mount") or name.startswith("crio-conmon-"):
        return None
    match = CONTAINER_ID_RE.search(name)
    return match.group(0) if match else None


def container_id_from_path(path: str) -> str | None:
    """Only the last path element is considered, exactly like the Agent."""
    return container_id_from_name(path.rstrip("/").rsplit("/", 1)[-1])


def container_id_from_proc_cgroup(text: str, cgroup_version: int) -> str | None:
    """The container ID the Agent would give a PID whose ``cgroup`` file reads ``text``."""
    path = agent_cgroup_path(parse_proc_cgroup(text), cgroup_version)
    return container_id_from_path(path) if path is not None else None


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
