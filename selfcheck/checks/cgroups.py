"""``cgroups``: the host cgroup tree, mounted read-only at ``/host/sys/fs/cgroup``.

The Agent reads every container's CPU, memory and I/O from this tree and detects the
cgroup version from the cgroup mounts under it (pkg/util/cgroups/reader_detector.go).
Proof here is by doing the
same: detect the layout, then find this container's own cgroup in the host tree and read
from it, as the Agent would for any container.

Finding the own cgroup must work in every namespace shape, because a private cgroup
namespace is the default for every non-privileged container on cgroup v2 with containerd:
there ``/proc/self/cgroup`` reads ``/``. So, in order, until the found directory's
``cgroup.procs`` lists this process:

1. by path: the Agent's line of ``/proc/self/cgroup`` (host cgroup namespace);
2. by inode: this container's own mount of the hierarchy (``/sys/fs/cgroup`` on v2,
   ``/sys/fs/cgroup/memory`` on v1) is its cgroup's directory, whose inode the host tree
   holds, as the Agent resolves a client's ``in-<inode>`` (``GetContainerIDForInode``);
3. by membership: the bounded host tree is searched for a ``cgroup.procs`` listing this PID
   (a private namespace with no own mount, e.g. ``unshare --cgroup``).

Only files every cgroup has prove it (``cgroup.procs``, and ``cpu.stat`` on v2); memory and
CPU accounting are read where their controller exists and otherwise noted, never failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfcheck import agentpod
from selfcheck.checks._common import Judge, not_replaced
from selfcheck.config import Config
from selfcheck.context import CheckContext
from selfcheck.host.cgroup import CgroupLayout, CgroupTree, agent_cgroup_path, host_prefix
from selfcheck.host.files import describe, read_text
from selfcheck.host.namespaces import INITIAL_CGROUP_NS_INODE
from selfcheck.host.procfs import Mount
from selfcheck.model import Outcome, Reason, Status, ok
from selfcheck.registry import CheckSpec, register

STAT_CAP = 16 * 1024

REMEDIATIONS = {
    Reason.ENOENT: (
        f"Mount the host's /sys/fs/cgroup read-only at /host/sys/fs/cgroup: the chart's "
        f"{agentpod.volume('cgroups').fix()}; with a custom path set DD_CONTAINER_CGROUP_ROOT."
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
        "This container's cgroup is not in the mounted tree (not by path, not by the inode of "
        "its own /sys/fs/cgroup, not by any cgroup.procs), so the tree is not the node's: the "
        "cgroups volume must be a hostPath of the node's /sys/fs/cgroup mounted at "
        "/host/sys/fs/cgroup, not the pod's own view or a copy."
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
JUDGE = Judge(REMEDIATIONS)

# What the Agent reads for memory and CPU on each version (pkg/util/cgroups/cgroupv1_*.go,
# cgroupv2_*.go): controller mount (v1) and file. Read where present, noted where not.
_STATS = {
    1: (("memory", "memory.usage_in_bytes"), ("cpuacct", "cpuacct.usage")),
    2: (("", "cpu.stat"), ("", "memory.current")),
}
PROCS_CAP = 1024 * 1024
SCAN_MAX_READS = 5_000
SCAN_RESERVE = 0.3
"""Seconds of the deadline the membership search leaves for reporting."""


@dataclass(frozen=True, slots=True)
class OwnCgroup:
    """Where this container's cgroup is in the host tree, and how it was found."""

    path: str
    found_by: str
    private_namespace: bool


def _procs_lists(directory: Path, pid: str) -> bool:
    try:
        text = read_text(directory / "cgroup.procs", PROCS_CAP)
    except OSError:
        return False
    return pid in text.split()


def _own_hierarchy_mount(mounts: list[Mount] | OSError, layout: CgroupLayout, prefix: str) -> str:
    """This container's own mount of the Agent's hierarchy: outside the host prefix, and made
    in its cgroup namespace. The kernel shows a cgroup mount's root relative to the reader's
    namespace, so a mount of the host's tree reads ``/..`` there and only an own one ``/``."""
    if isinstance(mounts, OSError):
        return ""
    for mount in mounts:
        if mount.mount_point.startswith(prefix) or mount.root != "/":
            continue
        if layout.agent_version == 2 and mount.fstype == "cgroup2":
            return mount.mount_point
        if mount.fstype == "cgroup" and "memory" in mount.super_options:
            return mount.mount_point
    return ""


def _by_inode(ctx: CheckContext, mount_point: str, tree: CgroupTree) -> str | None:
    if not mount_point:
        return None
    try:
        inode = ctx.host.at(mount_point).stat().st_ino
    except OSError:
        return None
    found = tree.by_inode().get(inode)
    return found.path if found is not None else None


def _by_membership(ctx: CheckContext, tree: CgroupTree, pid: str) -> str | None:
    """The bounded search: stops at ``SCAN_MAX_READS`` reads or when time runs short."""
    top = Path(tree.top)
    for count, directory in enumerate(tree.dirs):
        if count >= SCAN_MAX_READS or ctx.remaining() < SCAN_RESERVE:
            return None
        if _procs_lists(top / directory.path.lstrip("/"), pid):
            return directory.path
    return None


def find_own_cgroup(ctx: CheckContext, layout: CgroupLayout, tree: CgroupTree) -> OwnCgroup | None:
    """Each candidate is proven by its ``cgroup.procs`` listing this process.

    In the host cgroup namespace ``/proc/self/cgroup`` is absolute, so only the path counts:
    if it is not in the tree, the tree is not the node's (a pod's subtree). In a private one
    the inode of the own cgroup mount, then the membership search, find it.
    """
    pid = str(ctx.host.eyes.numeric_pid)
    top = Path(tree.top)
    lines = ctx.host.own_cgroup_lines()
    own = agent_cgroup_path(lines, layout.agent_version) if not isinstance(lines, OSError) else None
    if not _in_private_namespace(ctx):
        if own is not None and _procs_lists(top / own.lstrip("/"), pid):
            return OwnCgroup(own, "path", private_namespace=False)
        return None
    prefix = host_prefix(ctx.host.root.resolve(ctx.config.cgroup_root))
    mount_point = _own_hierarchy_mount(ctx.host.own_mounts(), layout, prefix)
    by_inode = _by_inode(ctx, mount_point, tree)
    if by_inode is not None and _procs_lists(top / by_inode.lstrip("/"), pid):
        return OwnCgroup(by_inode, f"the inode of {mount_point}", private_namespace=True)
    found = _by_membership(ctx, tree, pid)
    return (
        OwnCgroup(found, "its cgroup.procs", private_namespace=True) if found is not None else None
    )


def _in_private_namespace(ctx: CheckContext) -> bool:
    inode = ctx.host.cgroup_namespace_inode()
    return isinstance(inode, int) and inode != INITIAL_CGROUP_NS_INODE


def _relative(ctx: CheckContext, controller: str, own: OwnCgroup) -> str:
    """On v1 each hierarchy has its own path: the controller's line in the host namespace;
    in a private one the lines read ``/``, and the memory path found stands for all."""
    lines = ctx.host.own_cgroup_lines()
    if own.private_namespace or isinstance(lines, OSError):
        return own.path
    return next((line.path for line in lines if controller in line.controllers), own.path)


def _read_stats(
    ctx: CheckContext, layout: CgroupLayout, tree: CgroupTree, own: OwnCgroup
) -> tuple[dict[str, str], list[str]]:
    """The Agent's memory and CPU files for this cgroup: values read, and files absent."""
    values: dict[str, str] = {}
    absent: list[str] = []
    for controller, filename in _STATS[layout.agent_version]:
        if layout.agent_version == 2:
            base: str | None = tree.top
            relative = own.path
        else:
            base, relative = layout.v1_controllers.get(controller), _relative(ctx, controller, own)
        if base is None:
            absent.append(f"{filename} (no {controller} controller mounted)")
            continue
        try:
            text = read_text(Path(base) / relative.lstrip("/") / filename, STAT_CAP)
        except OSError as error:
            absent.append(f"{filename} ({describe(error)})")
            continue
        values[filename] = text.split("\n", 1)[0].strip()
    return values, absent


def _v2_controllers(layout: CgroupLayout) -> str:
    if layout.v2_mount is None:
        return ""
    return read_text(Path(layout.v2_mount) / "cgroup.controllers", 4096).strip()


def _no_controllers(root: Path, layout: CgroupLayout, why: str) -> Outcome:
    return JUDGE.outcome(
        Status.FAILED,
        Reason.NO_CONTROLLERS,
        f"{root}: {why}",
        details={"path": str(root), "layout": layout.version},
        node_info={"cgroup_version": layout.version if layout.version != "none" else ""},
    )


def _unreadable_root(config: Config, error: OSError) -> Outcome:
    failure = JUDGE.failure(error, config.cgroup_root, "read the host cgroup tree")
    return not_replaced(config, failure, error, "/sys/fs/cgroup")


def run(ctx: CheckContext) -> Outcome:
    config = ctx.config
    root = config.cgroup_root
    layout = ctx.host.cgroup_layout()
    if isinstance(layout, OSError):
        return _unreadable_root(config, layout)
    if layout.version == "none":
        why = "no cgroup2 mount and fewer than two cgroup v1 controllers are mounted there"
        return _no_controllers(root, layout, why)
    try:
        if layout.version == "v2" and not _v2_controllers(layout):
            return _no_controllers(
                root, layout, "cgroup2 is mounted but cgroup.controllers is empty"
            )
    except OSError as error:
        return JUDGE.failure(error, root, "read cgroup.controllers")
    found = _tree_and_own(ctx, layout)
    if isinstance(found, OSError):
        return JUDGE.failure(found, root, "walk the host cgroup tree")
    return _judge_own_cgroup(ctx, layout, *found)


def _tree_and_own(
    ctx: CheckContext, layout: CgroupLayout
) -> tuple[CgroupTree, OwnCgroup | None] | OSError:
    """The tree and this container's cgroup in it; a miss in the last cycle's walk (a
    ``TreeCache`` hit) walks again, as the Agent does on a miss."""
    tree = ctx.host.cgroup_tree()
    if isinstance(tree, OSError):
        return tree
    own = find_own_cgroup(ctx, layout, tree)
    if own is not None:
        return tree, own
    fresh = ctx.host.refresh_cgroup_tree()
    if isinstance(fresh, OSError) or fresh is tree:
        return fresh if isinstance(fresh, OSError) else (tree, None)
    return fresh, find_own_cgroup(ctx, layout, fresh)


def _judge_own_cgroup(
    ctx: CheckContext, layout: CgroupLayout, tree: CgroupTree, own: OwnCgroup | None
) -> Outcome:
    root = ctx.config.cgroup_root
    containers = len(tree.container_dirs())
    details: dict[str, object] = {
        "path": str(root),
        "layout": layout.version,
        "hierarchy": ctx.host.root.inside(tree.top),
        "controllers": sorted(layout.v1_controllers) if layout.agent_version == 1 else "unified",
        "container_cgroups": containers,
        "scan_truncated": tree.truncated,
    }
    extra: dict[str, Any] = {
        "details": details,
        "figures": {"container_cgroups": containers},
        "node_info": {"cgroup_version": layout.version},
    }
    if own is None:
        return _own_not_found(
            tree, containers, extra, _in_private_namespace(ctx), ctx.host.root.inside(tree.top)
        )
    if own.private_namespace and own.path == "/":
        return JUDGE.outcome(
            Status.FAILED,
            Reason.OWN_CGROUP_NOT_FOUND,
            f"{ctx.host.root.inside(tree.top)} is this container's own cgroup (its top holds "
            f"this process, found by "
            f"{own.found_by}), not the node's tree: the Agent sees no other container",
            **extra,
        )
    stats, absent = _read_stats(ctx, layout, tree, own)
    details.update(
        own_cgroup=own.path,
        found_by=own.found_by,
        cgroup_namespace="private" if own.private_namespace else "host",
        stats=stats,
    )
    if absent:
        details["not_accounted"] = absent
    return ok(_ok_message(root, layout, own, containers, absent), **extra)


def _ok_message(
    root: Path, layout: CgroupLayout, own: OwnCgroup, containers: int, absent: list[str]
) -> str:
    namespace = (
        "; private cgroup namespace, the default on cgroup v2" if own.private_namespace else ""
    )
    note = f"; not accounted here: {', '.join(a.split(' ')[0] for a in absent)}" if absent else ""
    return (
        f"{root}: cgroup {layout.version}, own cgroup {own.path!r} found by {own.found_by}"
        f"{namespace}, {containers} container cgroups visible{note}"
    )


def _own_not_found(
    tree: CgroupTree, containers: int, extra: dict[str, Any], private: bool, top: str
) -> Outcome:
    """In the host cgroup namespace a missing own path means the tree is not the node's. In a
    private one, with other containers visible, the Agent still collects them: degraded."""
    status = Status.DEGRADED if containers and private else Status.FAILED
    seen = f"{containers} container cgroups are visible" if containers else "no container cgroup is"
    return JUDGE.outcome(
        status,
        Reason.OWN_CGROUP_NOT_FOUND,
        f"{top}: this container's cgroup is not in the tree (not by path, by the inode of "
        f"its own cgroup mount, nor in any cgroup.procs of {len(tree.dirs)} directories); "
        f"{seen} visible",
        **extra,
    )


SPEC = register(
    CheckSpec(
        id="cgroups",
        title="container resource metrics (cgroups mount at /host/sys/fs/cgroup)",
        run=run,
        proves=(
            "cgroup v1, v2 or hybrid is detected the Agent's way (reader_detector.go: cgroup "
            "mounts under /host, controllers from the mount point's name); this container's own "
            "cgroup is found in the host tree by path, by the inode of its own cgroup mount (a "
            "private cgroup namespace) or by cgroup.procs, and the Agent's CPU and memory files "
            "read from it where the controllers exist; container cgroups are counted (bounded)."
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
