"""``cgroups``: the host cgroup tree, mounted read-only at ``/host/sys/fs/cgroup``.

The Agent reads every container's CPU, memory and I/O from this tree and detects the
cgroup version from the cgroup mounts under it (FACTS.md 2.5). Proof here is by doing the
same: detect the layout, then find this container's own cgroup in the host tree and read
a memory and a CPU statistic from it, as the Agent would for any container.
"""

from __future__ import annotations

import os
from pathlib import Path

from selfcheck.checks._common import os_failure
from selfcheck.config import Config
from selfcheck.host.cgroup import (
    CgroupLayout,
    CgroupLine,
    agent_cgroup_path,
    count_container_cgroups,
    detect_layout,
    parse_proc_cgroup,
)
from selfcheck.host.files import describe, read_text
from selfcheck.host.procfs import read_mountinfo
from selfcheck.model import Outcome, Reason, Status, ok
from selfcheck.registry import CheckSpec, register

STAT_CAP = 16 * 1024

REMEDIATIONS = {
    Reason.ENOENT: (
        "Mount the host's /sys/fs/cgroup read-only at /host/sys/fs/cgroup: the chart's cgroups "
        "volume (hostPath /sys/fs/cgroup, readOnly: true); with a custom path set "
        "DD_CONTAINER_CGROUP_ROOT."
    ),
    Reason.EACCES: (
        "The cgroup tree is mounted but unreadable for this user: run with the Agent's identity "
        "(securityContext.runAsUser) and check the volume's SELinux labels "
        "(securityContext.seLinuxOptions)."
    ),
    Reason.NO_CONTROLLERS: (
        "No cgroup file system is mounted under the cgroup root (or cgroup.controllers is empty): "
        "the cgroups volume must be a hostPath of the node's /sys/fs/cgroup with "
        "mountPropagation left at None, not an emptyDir or a copy."
    ),
    Reason.OWN_CGROUP_NOT_FOUND: (
        "This container's cgroup is not in the mounted tree, so the Agent cannot find containers "
        "there either: mount the node's /sys/fs/cgroup (not the pod's own view), and on cgroup v2 "
        "run in the host cgroup namespace (the Agent's --cgroupns=host; on Kubernetes the "
        "container runtime must not enable a private cgroup namespace for the Agent)."
    ),
    Reason.TIMEOUT: (
        "Reading did not finish within SELFCHECK_CHECK_TIMEOUT: a read blocked in the kernel. "
        "Look for a hung mount behind the cgroups volume (hostPath /sys/fs/cgroup at "
        "/host/sys/fs/cgroup) "
        "and the node's kernel log (dmesg)."
    ),
    Reason.IO_ERROR: (
        "Reading the cgroup tree failed unexpectedly: check the cgroups volume (hostPath "
        "/sys/fs/cgroup) and the node's kernel log."
    ),
}

# What the Agent reads for memory and CPU on each version (pkg/util/cgroups/cgroupv1_*.go, v2).
_STATS = {
    1: (("memory", "memory.usage_in_bytes"), ("cpuacct", "cpuacct.usage")),
    2: (("", "memory.current"), ("", "cpu.stat")),
}


def _own_cgroup_path(layout: CgroupLayout) -> tuple[str, list[CgroupLine]]:
    """This process's cgroup on the line the Agent reads, and all lines of ``/proc/self/cgroup``."""
    lines = parse_proc_cgroup(read_text("/proc/self/cgroup", 64 * 1024))
    return agent_cgroup_path(lines, layout.agent_version) or "", lines


def _controller_path(lines: list[CgroupLine], controller: str, default: str) -> str:
    """On v1 every controller has its own line and path; v2 has one for all."""
    for line in lines:
        if controller in line.controllers:
            return line.path
    return default


def _stat_files(layout: CgroupLayout, root: Path, own: str, lines: list[CgroupLine]) -> list[Path]:
    """The memory and CPU files of this cgroup in the host tree, per controller mount."""
    files = []
    for controller, filename in _STATS[layout.agent_version]:
        if layout.agent_version == 1:
            base = layout.v1_controllers.get(controller)
            if base is None:
                raise FileNotFoundError(2, f"no {controller} controller mounted", str(root))
            relative = _controller_path(lines, controller, own)
        else:
            base, relative = layout.v2_mount or str(root), own
        files.append(Path(base) / relative.lstrip("/") / filename)
    return files


def _read_stats(files: list[Path]) -> dict[str, str]:
    return {f.name: read_text(f, STAT_CAP).split("\n", 1)[0].strip() for f in files}


def _v2_controllers(layout: CgroupLayout) -> str:
    if layout.v2_mount is None:
        return ""
    return read_text(Path(layout.v2_mount) / "cgroup.controllers", 4096).strip()


def _no_controllers(root: Path, layout: CgroupLayout, why: str) -> Outcome:
    return Outcome(
        Status.FAILED,
        Reason.NO_CONTROLLERS,
        f"{root}: {why}",
        REMEDIATIONS[Reason.NO_CONTROLLERS],
        details={"path": str(root), "layout": layout.version},
        node_info={"cgroup_version": layout.version if layout.version != "none" else ""},
    )


def run(config: Config) -> Outcome:
    root = config.cgroup_root
    try:
        os.scandir(root).close()
        layout = detect_layout(read_mountinfo(), os.path.realpath(root))
        controllers = _v2_controllers(layout) if layout.version == "v2" else "v1"
    except OSError as error:
        return os_failure(REMEDIATIONS, error, root, "read the host cgroup tree")
    if layout.version == "none":
        return _no_controllers(root, layout, "no cgroup or cgroup2 file system is mounted there")
    if not controllers:
        return _no_controllers(root, layout, "cgroup2 is mounted but cgroup.controllers is empty")
    return _judge_own_cgroup(root, layout)


def _judge_own_cgroup(root: Path, layout: CgroupLayout) -> Outcome:
    version = layout.agent_version
    node_info = {"cgroup_version": layout.version}
    details: dict[str, object] = {
        "path": str(root),
        "layout": layout.version,
        "controllers": sorted(layout.v1_controllers) if version == 1 else "unified",
    }
    try:
        own, lines = _own_cgroup_path(layout)
        details["own_cgroup"] = own
        if own in ("", "/"):
            raise FileNotFoundError(
                2, f"own cgroup reads {own or 'nothing'!r}", "/proc/self/cgroup"
            )
        stats = _read_stats(_stat_files(layout, root, own, lines))
    except OSError as error:
        reason = Reason.OWN_CGROUP_NOT_FOUND
        if isinstance(error, PermissionError):
            reason = Reason.EACCES
        return Outcome(
            Status.FAILED,
            reason,
            f"cannot read this container's own cgroup in the host tree: {describe(error)}",
            REMEDIATIONS[reason],
            details=details,
            node_info=node_info,
        )
    top = Path(layout.v1_controllers["memory"]) if version == 1 else Path(layout.v2_mount or root)
    containers, truncated = count_container_cgroups(top)
    details.update(stats=stats, container_cgroups=containers, scan_truncated=truncated)
    return ok(
        f"{root}: cgroup {layout.version}, own cgroup {own!r} readable "
        f"(memory {stats[_STATS[version][0][1]]}), {containers} container cgroups visible",
        details=details,
        figures={"container_cgroups": containers},
        node_info=node_info,
    )


SPEC = register(
    CheckSpec(
        id="cgroups",
        title="container resource metrics (cgroups mount at /host/sys/fs/cgroup)",
        run=run,
        proves=(
            "cgroup v1, v2 or hybrid is detected the Agent's way (cgroup mounts under the root); "
            "this container's own cgroup is found in the host tree and a memory and a CPU "
            "statistic read from it; container cgroups visible are counted (bounded scan)."
        ),
        why=(
            "The Agent reads every container's CPU, memory and I/O from the host cgroup tree. "
            "Without it container metrics are missing while the Agent reports healthy."
        ),
        remediations=REMEDIATIONS,
        required_by_default=lambda config: True,
        required_because="required: the chart always mounts cgroups and container metrics need it",
        figures={"container_cgroups": "Container cgroups visible under the host cgroup root."},
    )
)
