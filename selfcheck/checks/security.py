"""``security``: least-privilege audit of what this container actually holds.

The seed document accepts the Agent's exceptions (host PID namespace, hostPath mounts, root)
only when they are scoped: host mounts read-only wherever feasible, no ptrace next to the
host PID namespace, non-root where the setup allows. The sidecar runs with the Agent
container's securityContext and mount table, so what this process holds is what the Agent
holds. The audit never fails a pod by default: it reports findings from a closed set, each
with a severity, and the Pod Security Standards level the observed settings imply.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from selfcheck import agentpod
from selfcheck.checks._common import Judge
from selfcheck.config import Config, unix_socket_file
from selfcheck.context import CheckContext
from selfcheck.host.capabilities import CapabilitySets, cap_bit, decode, mask_of
from selfcheck.host.eyes import AGENT, Eyes
from selfcheck.host.identity import (
    Identity,
    mount_writable,
    own_mount,
    read_identity,
    submounts,
)
from selfcheck.host.namespaces import INITIAL_PID_NS_INODE, namespace_inode, read_pid_view
from selfcheck.host.procfs import Mount, read_mountinfo
from selfcheck.host.root import Root
from selfcheck.model import Finding, Outcome, Reason, Severity, Status, skipped
from selfcheck.registry import CheckSpec, StateGauge, register

OWN_PROC = Path("/proc")
LOGS_CONTAINERS_DIR = Path("/var/log/containers")
POINTER_DIR = Path("/opt/datadog-agent/run")
RUNTIME_SOCKET_DIRS = (Path("/host/var/run"), Path("/host/var/run/containerd"))

# Docker's and containerd's default capability set (moby oci/caps/defaults.go, containerd
# pkg/oci/spec.go): what a container gets when its securityContext adds nothing.
RUNTIME_DEFAULT_CAPS = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)
RUNTIME_DEFAULT_MASK = mask_of(RUNTIME_DEFAULT_CAPS)
# Pod Security Standards, restricted: drop ALL, add back at most NET_BIND_SERVICE.
RESTRICTED_CAPS_MASK = mask_of(["CAP_NET_BIND_SERVICE"])
PTRACE_MASK = 1 << cap_bit("CAP_SYS_PTRACE")
SYS_ADMIN_MASK = 1 << cap_bit("CAP_SYS_ADMIN")

POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")
"""Closed set: the label values of ``selfcheck_security_pod_security_level``."""

REMEDIATIONS = {
    Reason.FINDINGS: (
        "Apply each finding's fix (selfcheck check --verbose --only security, or /status) to "
        "the Agent container's securityContext (Helm agents.containers.agent.securityContext) "
        "or to the named volumeMount; warnings never make the pod unready."
    ),
    Reason.CRITICAL_FINDINGS: (
        "A critical finding is a direct escalation path from the Agent to the node: apply its "
        "fix first (selfcheck check --verbose --only security shows each finding's fix). With "
        "SELFCHECK_REQUIRE=security a critical finding fails the check and readiness."
    ),
    Reason.IO_ERROR: (
        "This container's own /proc/self could not be read: check that the container has a "
        "normal /proc (no procMount override) and that no AppArmor or SELinux policy denies it."
    ),
}
JUDGE = Judge(REMEDIATIONS)


@dataclass(frozen=True, slots=True)
class FindingSpec:
    severity: Severity
    why: str
    remediation: str


_CORE_FINDINGS: dict[str, FindingSpec] = {
    "ptrace_with_host_pid": FindingSpec(
        Severity.CRITICAL,
        "CAP_SYS_PTRACE in the host PID namespace lets a compromised Agent attach to, read the "
        "memory of, and inject code into any process on the node: the escalation path the "
        "seed document warns about.",
        "Remove SYS_PTRACE from securityContext.capabilities.add of the Agent container (only "
        "the system-probe container needs it), or keep hostPID off (Helm datadog.useHostPID) "
        "where origin detection is not used.",
    ),
    "sys_admin": FindingSpec(
        Severity.CRITICAL,
        "CAP_SYS_ADMIN allows mounting file systems, entering other namespaces and the known "
        "cgroup release_agent escapes: close to a privileged container.",
        "Remove SYS_ADMIN from securityContext.capabilities.add and do not set privileged: "
        "true on the Agent container; the core Agent does not need it.",
    ),
    "extra_capabilities": FindingSpec(
        Severity.WARNING,
        "Capabilities beyond the container runtime's default set are not needed by the core "
        "Agent and widen what a compromise can do.",
        "Remove the listed capabilities from securityContext.capabilities.add (and "
        "privileged: true) of the Agent container; capabilities.drop: [ALL] is safe for a "
        "non-root Agent.",
    ),
    "root_not_needed": FindingSpec(
        Severity.INFO,
        "Running as UID 0 while no enabled feature needs it: the Agent works as its image's "
        "non-root user dd-agent (UID 100) with supplemental groups; only log collection from "
        "/var/log/pods needs root (datadog-agent#6442).",
        "Run as the non-root user: securityContext.runAsUser: 100 and runAsNonRoot: true "
        "(Helm datadog.securityContext), with the runtime socket's group in "
        "supplementalGroups (fsGroup does not reach hostPath volumes).",
    ),
    "root_for_logs": FindingSpec(
        Severity.INFO,
        "Running as UID 0 because log collection is enabled (DD_LOGS_ENABLED): the files under "
        "/var/log/pods are root-owned, so a non-root Agent cannot read them (datadog-agent#6442).",
        "Nothing to change while logs are collected from /var/log/pods; to drop root, grant "
        "the Agent's group read access to the node's pod logs first.",
    ),
    "no_seccomp": FindingSpec(
        Severity.INFO,
        "No seccomp filter (Seccomp: 0): every system call, including rarely needed ones "
        "behind past kernel escapes, is reachable from the Agent.",
        "Set securityContext.seccompProfile.type: RuntimeDefault on the Agent container (or "
        "the pod), or enable the kubelet's seccompDefault.",
    ),
    "privilege_escalation_allowed": FindingSpec(
        Severity.INFO,
        "NoNewPrivs is 0: a setuid or file-capability binary can still raise this process's "
        "privileges, up to its whole bounding set.",
        "Set securityContext.allowPrivilegeEscalation: false on the Agent container "
        "(Kubernetes refuses it together with privileged: true or CAP_SYS_ADMIN).",
    ),
    "root_fs_writable": FindingSpec(
        Severity.WARNING,
        "A writable root file system lets a compromise persist tools or alter the Agent's "
        "own files for the life of the container.",
        "Set securityContext.readOnlyRootFilesystem: true (the chart's default for the agent "
        "container) and give scratch directories an emptyDir.",
    ),
}


@dataclass(frozen=True, slots=True)
class Volume:
    """One row of the Agent's mount table (helm-charts _daemonset-volumes-linux.yaml).

    ``paths`` gives where this container sees it; ``plain`` the same place on a machine
    without the volume (``/proc`` for procdir): a path that *is* its plain location is the
    machine's own file system, not a host mount, and is not audited. The mount path and
    whether it should be read-only are the chart's (``selfcheck.agentpod``), read by name so
    the two tables cannot disagree.
    """

    name: str
    paths: Callable[[Config], tuple[Path, ...]]
    risk: str = ""
    plain: Callable[[Path], Path | None] = lambda path: None

    @property
    def mount_path(self) -> str:
        return agentpod.volume(self.name).mount_path

    @property
    def read_only(self) -> bool:
        return agentpod.volume(self.name).read_only

    @property
    def finding(self) -> str:
        return f"{self.name.replace('-', '_')}_writable"


def _strip_host(path: Path) -> Path | None:
    """``/host/var/run`` -> ``/var/run``: the node path a ``host``-prefixed path stands for.
    A path with no ``host`` component is its own plain location."""
    parts = path.parts
    if "host" not in parts:
        return path
    return Path("/", *parts[len(parts) - parts[::-1].index("host") :])


def _socket_dirs(config: Config) -> tuple[Path, ...]:
    dirs = list(RUNTIME_SOCKET_DIRS)
    for setting in (config.cri_socket_path, config.docker_host):
        path = unix_socket_file(setting)
        if path:
            dirs.append(Path(path).parent)
    return tuple(dict.fromkeys(dirs))


VOLUMES: tuple[Volume, ...] = (
    Volume(
        "procdir",
        lambda c: (c.host_proc,),
        risk="a root process can rewrite the node's kernel settings under /proc/sys "
        "(kernel.core_pattern runs a program as root on the node) and use /proc/sysrq-trigger.",
        plain=lambda _: Path("/proc"),
    ),
    Volume(
        "cgroups",
        lambda c: (c.cgroup_root,),
        risk="a root process can change other pods' resource limits and move processes between "
        "cgroups (on cgroup v1 each controller is a submount the volume's readOnly misses).",
        plain=lambda _: Path("/sys/fs/cgroup"),
    ),
    Volume(
        "os-release-file",
        lambda c: (c.os_release_path,),
        risk="the node's OS identity can be falsified for every tool that reads it.",
        plain=lambda _: Path("/etc/os-release"),
    ),
    Volume(
        "passwd",
        lambda c: (c.passwd_path,),
        risk="a root process can add a UID 0 account to the node.",
    ),
    Volume(
        "runtimesocketdir",
        _socket_dirs,
        risk="the runtime's sockets and state files on the node can be deleted or replaced; "
        "connecting to the socket works through a read-only mount.",
        plain=_strip_host,
    ),
    Volume(
        "logpodpath",
        lambda c: (c.pod_logs_dir,),
        risk="other pods' logs can be altered or deleted, destroying evidence.",
    ),
    Volume(
        "logscontainerspath",
        lambda c: (LOGS_CONTAINERS_DIR,),
        risk="the node's container log links can be altered or deleted.",
    ),
    Volume("dsdsocket", lambda c: (c.dogstatsd_socket.parent,)),
    Volume("apmsocket", lambda c: (c.apm_socket.parent,)),
    Volume("pointerdir", lambda c: (POINTER_DIR,)),
)
"""Only dsdsocket, apmsocket and pointerdir need write access (``agentpod.VOLUMES``): the Agent
creates its sockets and its log position files there."""


def _mount_finding(volume: Volume) -> FindingSpec:
    return FindingSpec(
        Severity.WARNING,
        f"The {volume.name} host mount ({volume.mount_path}) is writable although the Agent "
        f"only reads it: {volume.risk}",
        f"Set readOnly: true on the {volume.name} volumeMount ({volume.mount_path}) of the "
        "Agent container and the sidecar; when only submounts are writable, also set "
        "recursiveReadOnly: IfPossible on it (Kubernetes 1.30+, with a runtime that supports it).",
    )


RECURSIVE_READ_ONLY = (
    "Set recursiveReadOnly: IfPossible (with readOnly: true) on the cgroups volumeMount "
    "(/host/sys/fs/cgroup) of the Agent container and of the sidecar or node-mode container. "
    "It is honoured from Kubernetes 1.30 (alpha, feature gate RecursiveReadOnlyMounts), 1.31 "
    "(beta, on by default) and 1.33 (GA), on Linux 5.12 or later (mount_setattr with "
    "AT_RECURSIVE), with runc 1.1 or crun 1.4 and a CRI that passes it (containerd 2.0, CRI-O "
    "1.30); where any of these is older, IfPossible falls back silently to a plain read-only "
    "mount and this finding stays, while Enabled would keep the pod from starting "
    "(kubernetes/enhancements keps/sig-node/3857-rro-mounts)."
)

CGROUP_SUBMOUNTS = "cgroups_submounts_writable"
"""A read-only cgroups mount whose cgroup v1 controller submounts stay writable: a warning,
although the chart renders it, because it opens a write path into every pod's cgroups."""

FINDINGS: dict[str, FindingSpec] = {
    **_CORE_FINDINGS,
    **{v.finding: _mount_finding(v) for v in VOLUMES if v.read_only},
    CGROUP_SUBMOUNTS: FindingSpec(
        Severity.WARNING,
        "The cgroups host mount is read-only but, on a cgroup v1 node, each controller "
        "(memory, cpu,cpuacct, pids, ...) is a submount that readOnly does not reach: a root "
        "process with CAP_DAC_OVERRIDE (in the runtime's default set) can change other pods' "
        "limits and move processes between cgroups.",
        RECURSIVE_READ_ONLY,
    ),
}
"""The closed set of finding ids: the ``finding`` label of ``selfcheck_finding``."""


@dataclass(frozen=True, slots=True)
class MountAudit:
    volume: Volume
    path: Path
    mount: Mount
    writable: bool
    writable_submounts: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "volume": self.volume.name,
            "path": str(self.path),
            "writable": self.writable,
            "writable_submounts": list(self.writable_submounts),
        }


def _is_plain(volume: Volume, path: Path, root: Root) -> bool:
    plain = volume.plain(path)
    if plain is None:
        return False
    if root.is_own:
        return os.path.realpath(plain) == os.path.realpath(path)
    return root.resolve(plain) == root.resolve(path)


def audit_mounts(config: Config, mounts: list[Mount], root: Root | None = None) -> list[MountAudit]:
    """Every volume of the table that is present here as a mount of its own; a mount shared by
    two rows (apmsocket in dsdsocket's directory) is audited once, under the first."""
    root = root or Root()
    audits: list[MountAudit] = []
    seen: set[int] = set()
    for volume in VOLUMES:
        for path in volume.paths(config):
            mount = own_mount(path, mounts, root)
            if mount is None or mount.mount_id in seen or _is_plain(volume, path, root):
                continue
            seen.add(mount.mount_id)
            below = tuple(m.mount_point for m in submounts(mount, mounts) if mount_writable(m))
            audits.append(MountAudit(volume, path, mount, mount_writable(mount), below))
    return audits


def obtainable_caps(identity: Identity) -> int:
    """What this process holds or can regain: its effective, permitted and ambient sets, plus
    the bounding set while ``NoNewPrivs`` is off (a setuid or file-capability binary can then
    raise it that far)."""
    caps = identity.capabilities
    held = caps.effective | caps.permitted | caps.ambient
    if identity.no_new_privs != 1:
        held |= caps.bounding
    return held


def _finding(fid: str, message: str, severity: Severity | None = None) -> Finding:
    spec = FINDINGS[fid]
    return Finding(fid, severity or spec.severity, message, spec.remediation)


def _names(mask: int) -> str:
    return ", ".join(decode(mask))


def _how_held(identity: Identity, mask: int) -> str:
    caps = identity.capabilities
    if caps.effective & mask:
        return "in the effective set"
    if (caps.permitted | caps.ambient) & mask:
        return "in the permitted set"
    return "in the bounding set and privilege escalation is allowed"


def capability_findings(identity: Identity, host_pid: bool | None) -> Iterator[Finding]:
    held = obtainable_caps(identity)
    if held & PTRACE_MASK and host_pid:
        yield _finding(
            "ptrace_with_host_pid",
            f"CAP_SYS_PTRACE is {_how_held(identity, PTRACE_MASK)}, in the host PID namespace: "
            "every process on the node can be traced.",
        )
    if held & SYS_ADMIN_MASK:
        yield _finding("sys_admin", f"CAP_SYS_ADMIN is {_how_held(identity, SYS_ADMIN_MASK)}.")
    extra = held & ~RUNTIME_DEFAULT_MASK
    if extra:
        yield _finding(
            "extra_capabilities",
            f"{_count(bin(extra).count('1'), 'capability')} beyond the runtime default: "
            f"{_names(extra)}.",
        )


def root_needed_by(config: Config) -> list[str]:
    """Enabled features that need UID 0 (datadog-agent#6442): only log collection, whose files under
    /var/log/pods are root-owned; the runtime socket, procfs and cgroupfs work for UID 100
    with supplemental groups."""
    return ["logs (DD_LOGS_ENABLED)"] if config.logs_enabled else []


def identity_findings(identity: Identity, config: Config) -> Iterator[Finding]:
    if identity.uid == 0:
        if root_needed_by(config):
            yield _finding("root_for_logs", "Runs as UID 0, needed to read /var/log/pods.")
        else:
            yield _finding("root_not_needed", "Runs as UID 0 but no enabled feature needs root.")
    if identity.seccomp == 0:
        yield _finding("no_seccomp", "No seccomp filter applies to this process (Seccomp: 0).")
    if identity.no_new_privs == 0:
        yield _finding(
            "privilege_escalation_allowed", "Privilege escalation is allowed (NoNewPrivs: 0)."
        )


def mount_findings(
    audits: list[MountAudit], mounts: list[Mount], root: Root | None = None
) -> Iterator[Finding]:
    for audit in audits:
        if not audit.volume.read_only or not (audit.writable or audit.writable_submounts):
            continue
        if audit.writable:
            yield _finding(
                audit.volume.finding, f"{audit.path} ({audit.volume.name}) is mounted read-write."
            )
            continue
        yield _submount_finding(audit)
    top = own_mount(Path("/"), mounts, root)
    if top is not None and mount_writable(top):
        yield _finding("root_fs_writable", "The container's root file system is read-write.")


def _submount_finding(audit: MountAudit) -> Finding:
    """Writable submounts below a read-only mount, named. On the cgroups mount (cgroup v1
    controllers) a warning with its own id and fix; elsewhere a note under the volume's id."""
    shown = ", ".join(audit.writable_submounts[:3])
    more = len(audit.writable_submounts) - 3
    shown += f" and {more} more" if more > 0 else ""
    noun = "submount is" if len(audit.writable_submounts) == 1 else "submounts are"
    message = (
        f"{audit.path} ({audit.volume.name}) is read-only but {len(audit.writable_submounts)} "
        f"{noun} read-write: {shown}."
    )
    if audit.volume.name == "cgroups":
        return _finding(CGROUP_SUBMOUNTS, message)
    return _finding(audit.volume.finding, message, Severity.INFO)


def pod_security(
    identity: Identity, host_pid: bool | None, audits: list[MountAudit]
) -> tuple[str, list[str]]:
    """The strictest Pod Security Standards level the observed settings allow, and the
    settings that keep it from being stricter."""
    caps = identity.capabilities
    privileged: list[str] = []
    if host_pid:
        privileged.append("hostPID: true")
    if audits:
        names = ", ".join(dict.fromkeys(a.volume.name for a in audits))
        privileged.append(f"hostPath volumes: {names}")
    added = caps.bounding & ~RUNTIME_DEFAULT_MASK
    if added:
        privileged.append(f"capabilities beyond baseline: {_names(added)}")
    if privileged:
        return "privileged", privileged
    baseline: list[str] = []
    if identity.uid == 0:
        baseline.append("runs as UID 0 (runAsNonRoot)")
    if identity.no_new_privs != 1:
        baseline.append("allowPrivilegeEscalation is not false")
    if identity.seccomp != 2:
        baseline.append("no RuntimeDefault or Localhost seccompProfile")
    if caps.bounding & ~RESTRICTED_CAPS_MASK:
        baseline.append("capabilities not dropped to ALL (except NET_BIND_SERVICE)")
    return ("baseline", baseline) if baseline else ("restricted", [])


def _details(
    identity: Identity,
    host_pid: bool | None,
    audits: list[MountAudit],
    config: Config,
    level: tuple[str, list[str]],
) -> dict[str, object]:
    caps: CapabilitySets = identity.capabilities
    details: dict[str, object] = {
        "uid": identity.uid,
        "host_pid": host_pid,
        "seccomp": identity.seccomp_mode,
        "no_new_privs": identity.no_new_privs,
        **caps.named(),
        "mounts": [a.to_json() for a in audits],
        "root_needed_by": root_needed_by(config),
        "pod_security_level": level[0],
        "pod_security_forced_by": level[1],
    }
    del details["CapInh"]
    if caps.garbled:
        details["garbled_status_fields"] = list(caps.garbled)
    return details


def judge(
    identity: Identity,
    mounts: list[Mount],
    host_pid: bool | None,
    config: Config,
    root: Root | None = None,
) -> Outcome:
    """The whole audit from what was read; no I/O here except resolving mount paths inside
    ``root``, the audited container's (selfcheck's own by default)."""
    audits = audit_mounts(config, mounts, root)
    # Root, no seccomp filter and privilege escalation allowed are what the chart renders by
    # default and cost the Agent nothing: INFO notes, never a degraded verdict
    # (docs/checks/security.md).
    findings = (
        *capability_findings(identity, host_pid),
        *identity_findings(identity, config),
        *mount_findings(audits, mounts, root),
    )
    level = pod_security(identity, host_pid, audits)
    details = _details(identity, host_pid, audits, config, level)
    critical = [f.id for f in findings if f.severity == Severity.CRITICAL]
    serious = [f.id for f in findings if f.severity != Severity.INFO]
    if not serious:
        notes = [f.id for f in findings]
        noted = f" beyond the chart's defaults (noted: {', '.join(notes)})" if notes else ""
        return Outcome(
            Status.OK,
            Reason.OK,
            f"no least-privilege findings{noted}; Pod Security level {level[0]}",
            details=details,
            findings=findings,
        )
    reason = Reason.CRITICAL_FINDINGS if critical else Reason.FINDINGS
    return JUDGE.outcome(
        Status.DEGRADED,
        reason,
        f"{_count(len(serious), 'least-privilege finding')} ({len(critical)} critical): "
        f"{', '.join(serious)}; Pod Security level {level[0]}",
        details=details,
        findings=findings,
    )


def _count(n: int, noun: str) -> str:
    """``1 least-privilege finding``, ``2 least-privilege findings``, ``3 capabilities``."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun[:-1]}ies" if noun.endswith("y") else f"{n} {noun}s"


def not_in_a_container(config: Config) -> Outcome:
    """Outside a container the audit would judge the machine's own processes as if they were
    a pod's (root, every capability, a writable root: "critical"), which says nothing true."""
    return skipped(
        Reason.NOT_APPLICABLE,
        "not in a container: the audit judges a container's privileges (its securityContext, "
        "hostPath mounts and Pod Security level), which a process on the machine itself does "
        "not have; SELFCHECK_CONTAINERIZED=true audits this process as if it were one",
    )


def host_pid_namespace(host_proc: Path) -> bool | None:
    """Whether this process is in the node's PID namespace; ``None`` when it cannot be told.

    With a host procfs mounted, ``NSpid`` there has one entry exactly when this process shares
    its namespace. Without one (``host_proc`` is this container's own ``/proc``) that test is
    always true, so only the initial namespace's fixed inode can show the node's namespace.
    """
    try:
        if os.path.realpath(host_proc) == str(OWN_PROC):
            return namespace_inode("pid", OWN_PROC) == INITIAL_PID_NS_INODE
        levels = read_pid_view(host_proc).levels
    except OSError:
        return None
    return levels == 1 if levels else None


def _in_host_pid_namespace(ctx: CheckContext) -> bool | None:
    """This process's PID namespace, or the Agent's in its view: its ``NSpid`` in the procfs
    it was found in has one entry when it shares that (the node's) namespace."""
    eyes = ctx.host.eyes
    if eyes.audited == "self":
        return host_pid_namespace(ctx.host.host_proc)
    try:
        levels = read_pid_view(eyes.proc, eyes.audited).levels
    except OSError:
        return None
    return levels == 1 if levels else None


def run(ctx: CheckContext) -> Outcome:
    """The audit of the viewed container: the Agent's identity and mounts in its view."""
    config = ctx.config
    if not config.containerized:
        return not_in_a_container(config)
    eyes = ctx.host.eyes
    pid = eyes.audited
    try:
        identity = read_identity(eyes.proc, pid)
    except OSError as error:
        status = eyes.proc / pid / "status"
        return JUDGE.failure(error, status, "read the container's status")
    try:
        mounts = read_mountinfo(eyes.proc, pid)
    except OSError as error:
        where = eyes.proc / pid / "mountinfo"
        return JUDGE.failure(error, where, "read the mount table")
    outcome = judge(identity, mounts, _in_host_pid_namespace(ctx), config, _audited_root(eyes))
    return replace(outcome, view=AGENT) if pid != "self" else outcome


def _audited_root(eyes: Eyes) -> Root:
    """Where the audited mount table's paths resolve: the Agent's root (pinned, in its view;
    followed by PID where the cycle could not enter it, which leaves a path as named when
    the kernel refuses), selfcheck's own when it audits itself."""
    if eyes.view == AGENT or eyes.audited == "self":
        return eyes.root
    return Root(eyes.proc / eyes.audited / "root")


def _catalog() -> dict[str, str]:
    return {f"{fid} ({spec.severity})": spec.why for fid, spec in FINDINGS.items()}


SPEC = register(
    CheckSpec(
        id="security",
        title="least-privilege audit of the Agent's identity, capabilities and mounts",
        run=run,
        proves=(
            "what this container (and so the Agent, whose securityContext and mounts it "
            "mirrors) really holds: its UID, its capability sets (CapEff, CapPrm, CapBnd, "
            "CapAmb, decoded to names), seccomp, NoNewPrivs, whether each host mount of the "
            "Agent's table is writable (from /proc/self/mountinfo) and whether the root file "
            "system is, and the Pod Security Standards level those settings imply."
        ),
        why=(
            "hostPID, hostPath mounts and root are accepted for monitoring only when scoped: "
            "read-only mounts, no ptrace next to hostPID, non-root where possible."
        ),
        needs_view=False,
        catalog_title="Findings (id, severity: why it matters)",
        catalog=_catalog(),
        findings=frozenset(FINDINGS),
        states={
            "pod_security_level": StateGauge(
                "1 for the Pod Security Standards level the security audit's observations imply.",
                "level",
                POD_SECURITY_LEVELS,
            )
        },
        remediations=REMEDIATIONS,
        required_because="optional by default; SELFCHECK_REQUIRE=security makes a critical "
        "finding fail the check",
    )
)
