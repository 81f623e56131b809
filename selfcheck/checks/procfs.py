"""``procfs``: the host's ``/proc``, mounted read-only at ``/host/proc`` (the chart's procdir).

The Agent reads every host process from here (process check, container PIDs, origin
detection) and registers its PID-to-container lookup only when ``/host/proc`` exists
(pkg/util/containers/metrics/system/collector_linux.go). A missing, foreign or
``hidepid``-restricted procfs does not make the Agent fail: it makes it quietly see less, which
is why this check counts what it can see.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfcheck import agentpod
from selfcheck.checks._common import Judge
from selfcheck.context import CheckContext
from selfcheck.host.files import describe, read_text
from selfcheck.host.procfs import Mount, mount_for, read_status
from selfcheck.model import Outcome, Reason, Status, ok
from selfcheck.registry import CheckSpec, register

INIT_SYSTEMS = frozenset({"systemd", "init", "openrc-init", "runit", "s6-svscan", "launchd"})
AGENT_HOST_PROC = Path("/host/proc")
"""Where the chart mounts procdir, and where the Agent looks for it (fixup_init.go)."""
OWN_PROC = Path("/proc")

REMEDIATIONS = {
    Reason.ENOENT: (
        f"Mount the host's /proc read-only at /host/proc: the chart's "
        f"{agentpod.volume('procdir').fix()}; with a custom path set HOST_PROC."
    ),
    Reason.EACCES: (
        "The procfs mount exists but this user cannot list it: run with the Agent's identity "
        "(securityContext.runAsUser 0, the chart default) or check the hostPath volume's "
        "SELinux/AppArmor labels (securityContext.seLinuxOptions)."
    ),
    Reason.NOT_PROCFS: (
        "The path is not a procfs mount: the procdir volume must be hostPath /proc (not an "
        "emptyDir or a copy) mounted at /host/proc."
    ),
    Reason.NOT_HOST: (
        "This procfs belongs to a container's PID namespace, not the node's: mount the node's "
        "/proc (procdir volume, hostPath /proc) at /host/proc instead of a procfs of the pod."
    ),
    Reason.HIDEPID: (
        "The host mounts /proc with hidepid, so this user sees only its own processes: run "
        "the Agent as root (securityContext.runAsUser: 0, the chart default) or add the "
        "hidepid gid= group to securityContext.supplementalGroups."
    ),
    Reason.TIMEOUT: (
        "Reading did not finish within SELFCHECK_CHECK_TIMEOUT: a read blocked in the kernel. "
        "Look for a hung mount behind the procdir volume (hostPath /proc at /host/proc) "
        "and the node's kernel log (dmesg)."
    ),
    Reason.IO_ERROR: (
        "Reading the procfs failed unexpectedly: check the procdir volume (hostPath /proc) "
        "and the node's kernel log."
    ),
}
JUDGE = Judge(REMEDIATIONS)


@dataclass(frozen=True, slots=True)
class Ownership:
    """What this procfs says about whose PID namespace it belongs to."""

    initial_namespace: bool
    pid1_name: str
    own_pid: int | None


def _mount_of(ctx: CheckContext, path: Path) -> Mount | None:
    """The viewed container's mount holding ``path`` (its own name for it, links resolved)."""
    mounts = ctx.host.own_mounts()
    if isinstance(mounts, OSError):
        return None
    return mount_for(Path(ctx.host.root.resolve(path)), mounts)


def _hidepid(mount: Mount | None) -> str | None:
    if mount is None:
        return None
    for option in mount.super_options | mount.options:
        name, _, value = option.partition("=")
        if name == "hidepid" and value not in ("0", "off"):
            return value
    return None


def _name_of(proc: Path, pid: int) -> str:
    try:
        return read_status(proc, pid).get("Name", "")
    except OSError:
        return ""


def _ownership(proc: Path) -> Ownership:
    """Kernel threads live only in the initial PID namespace: ``kthreadd`` is PID 2 there."""
    try:
        own: int | None = int((proc / "self").readlink().name)
    except (OSError, ValueError):
        own = None
    return Ownership(_name_of(proc, 2) == "kthreadd", _name_of(proc, 1), own)


def _kernel(proc: Path) -> str:
    try:
        return read_text(proc / "sys/kernel/osrelease", 256).strip()
    except OSError:
        return ""


def _not_the_node(proc: Path, owner: Ownership, count: int) -> tuple[Reason, str] | None:
    """Why ``proc`` is not the node's whole procfs, or ``None`` when it is."""
    if owner.initial_namespace or owner.pid1_name in INIT_SYSTEMS:
        return None
    return (
        Reason.NOT_HOST,
        f"{proc} is not the node's procfs: PID 1 is {owner.pid1_name or 'unreadable'!r}, "
        f"no kernel threads are visible and only {count} processes show",
    )


def _hidden_by_hidepid(
    proc: Path, hidepid: str | None, pid1_visible: bool, count: int, *, uid: int
) -> tuple[Reason, str] | None:
    """Why this user sees only part of ``proc``, or ``None`` when hidepid hides nothing."""
    if hidepid is None or pid1_visible:
        return None
    return (
        Reason.HIDEPID,
        f"{proc} is mounted with hidepid={hidepid}: this user (uid {uid}) sees "
        f"only {count} processes and not PID 1",
    )


def _missing_in_container(ctx: CheckContext, error: OSError) -> Outcome | None:
    """``/host/proc`` absent in a container: the Agent falls back to the container's ``/proc``
    (fixup_init.go). With hostPID that still shows the node's processes, so system and process
    metrics work while the PID-to-container lookup is off (collector_linux.go): ``degraded``.
    Without hostPID it shows only this pod: ``failed``. Never judged as if it were the host's.
    """
    config = ctx.config
    if not (config.containerized and config.host_proc == AGENT_HOST_PROC):
        return None
    if not isinstance(error, FileNotFoundError):
        return None
    own = _ownership(ctx.host.at(OWN_PROC))
    shown = describe(error, config.host_proc)
    if own.initial_namespace or own.pid1_name in INIT_SYSTEMS:
        return JUDGE.outcome(
            Status.DEGRADED,
            Reason.ENOENT,
            f"{shown}: the procdir mount is missing. The Agent falls back to this container's "
            f"/proc, which shows the node's processes (hostPID, PID 1 {own.pid1_name!r}), so "
            "process metrics work, but it registers no PID-to-container lookup: DogStatsD "
            "origin detection is off and no error is counted",
            details={"path": str(config.host_proc), "fallback": str(OWN_PROC), "host_pid": True},
        )
    return JUDGE.outcome(
        Status.FAILED,
        Reason.ENOENT,
        f"{shown}: the procdir mount is missing, and this container's own /proc shows only the "
        f"pod's processes (PID 1 {own.pid1_name or 'unreadable'!r}): the Agent sees no host "
        "process",
        details={"path": str(config.host_proc), "fallback": str(OWN_PROC), "host_pid": False},
    )


def run(ctx: CheckContext) -> Outcome:
    """``proc`` is the viewed container's name for the mount, ``opened`` where it is read."""
    config = ctx.config
    proc, opened = config.host_proc, ctx.host.host_proc
    pids = ctx.host.host_pids()
    if isinstance(pids, OSError):
        return _missing_in_container(ctx, pids) or JUDGE.failure(pids, proc, "list the host procfs")
    mount = _mount_of(ctx, proc)
    if mount is None or mount.fstype != "proc":
        fstype = mount.fstype if mount else "unknown"
        return JUDGE.outcome(
            Status.FAILED,
            Reason.NOT_PROCFS,
            f"{proc} is not a procfs mount (file system type {fstype})",
            details={"path": str(proc), "fstype": fstype},
        )
    count = len(pids)
    hidepid = _hidepid(mount)
    owner = _ownership(opened)
    details: dict[str, object] = {
        "path": str(proc),
        "visible_processes": count,
        "initial_pid_namespace": owner.initial_namespace,
        "pid1": owner.pid1_name,
        "self_resolves_to": owner.own_pid,
        "hidepid": hidepid or "off",
        "read_only": mount.read_only,
    }
    pid1_error = _pid1_error(opened)
    uid = ctx.host.eyes.credentials.uid
    figures = {"visible_processes": count}
    partial = _hidden_by_hidepid(
        proc, hidepid, pid1_error is None, count, uid=uid
    ) or _not_the_node(proc, owner, count)
    if partial is not None:
        reason, message = partial
        return JUDGE.outcome(Status.FAILED, reason, message, details=details, figures=figures)
    if pid1_error is not None:
        return JUDGE.failure(pid1_error, proc / "1", "read PID 1", details=details, figures=figures)
    kernel = _kernel(opened)
    note = "" if owner.initial_namespace else " (the node is itself a container)"
    return ok(
        f"{proc} is the node's procfs{note}: {count} processes visible, "
        f"PID 1 {owner.pid1_name!r} readable",
        details={**details, "kernel": kernel},
        figures=figures,
        node_info={"kernel": kernel},
    )


def _pid1_error(proc: Path) -> OSError | None:
    """PID 1's status and cgroup are what the Agent reads first; ``None`` when both read."""
    try:
        read_status(proc, 1)
        read_text(proc / "1" / "cgroup", 64 * 1024)
    except OSError as error:
        return error
    return None


SPEC = register(
    CheckSpec(
        id="procfs",
        title="host processes (procdir mount at /host/proc)",
        run=run,
        proves=(
            "the path is a procfs mount; it belongs to the node's PID namespace (kernel threads "
            "or an init system as PID 1 are visible); PID 1's status and cgroup are readable; "
            "hidepid does not hide the node's processes from this user. It counts the visible "
            "processes."
        ),
        why=(
            "The Agent's process check, container metrics and DogStatsD origin detection all read "
            "/host/proc/<pid>. Without it the Agent runs, reports healthy and sends metrics "
            "without container tags (it silently skips the PID-to-container lookup)."
        ),
        remediations=REMEDIATIONS,
        required_by_default=lambda config: True,
        required_because=(
            "required: the chart always mounts procdir and every container feature needs it"
        ),
        figures={"visible_processes": "Processes visible in the host procfs."},
    )
)
