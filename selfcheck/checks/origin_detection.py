"""``origin_detection``: DogStatsD origin detection, proven the way the Agent performs it.

The Agent tags a DogStatsD packet with its sender's container in three kernel-dependent
steps (FACTS.md 2): the ``SO_PASSCRED`` socket gives the sender's PID as the Agent's PID
namespace sees it, ``/host/proc/<pid>/cgroup`` gives that PID's cgroup, and a fixed rule
turns the cgroup into a container ID. Every step fails silently: a PID of 0 is accepted
untagged, a missing ``/host/proc`` disables the lookup without counting an error, and "no
container matched" is not an error either. So each step is done here for real:

1. the PID namespace: ``NSpid`` of ``<host proc>/self/status`` has one entry;
2. the ``SO_PASSCRED`` round trip from a child process carries the child's non-zero PID;
3. this container's own PID maps to its container ID with the Agent's exact rule;
4. a bounded sample of host processes in pod or container cgroups maps too (the ratio).

Not being in a container at all (a bare machine, a cgroup outside any runtime path) is not a
failure: no container ID applies, and the sample alone says whether other containers resolve.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from selfcheck.checks import procfs
from selfcheck.checks._common import os_failure
from selfcheck.config import Config
from selfcheck.context import CheckContext
from selfcheck.host.cgroup import (
    agent_cgroup_path,
    container_id_from_path,
    detect_layout,
    in_runtime_cgroup,
    parse_proc_cgroup,
    read_proc_cgroup,
)
from selfcheck.host.files import describe, path_exists
from selfcheck.host.namespaces import (
    INITIAL_CGROUP_NS_INODE,
    INITIAL_PID_NS_INODE,
    PidView,
    namespace_inode,
    read_pid_view,
)
from selfcheck.host.passcred import RoundTrip, round_trip
from selfcheck.host.procfs import evenly_spaced, list_pids, read_mountinfo
from selfcheck.model import Outcome, Reason, Status
from selfcheck.registry import CheckSpec, register

# The Agent, when containerized, registers its PID lookup only if this path exists
# (pkg/config/env IsHostProcAvailable), whatever HOST_PROC says.
AGENT_HOST_PROC = Path("/host/proc")
# Below this share of sampled container processes resolving, the check is degraded.
SAMPLE_THRESHOLD = 0.9
MAX_EXAMPLES = 3

REMEDIATIONS = {
    Reason.PROCFS_MISSING: (
        "Mount the node's /proc read-only at /host/proc: the chart's procdir volume (hostPath "
        "/proc, mountPath /host/proc, readOnly: true). In a container the Agent registers its "
        "PID-to-container lookup only when /host/proc exists; without it every DogStatsD "
        "metric goes out without container tags and no error is counted."
    ),
    Reason.NOT_HOST_PID: (
        "Run the pod in the node's PID namespace: spec.hostPID: true (Helm value "
        "datadog.useHostPID, default true), and mount the node's /proc, not a pod's, at "
        "/host/proc (procdir volume, hostPath /proc). Without it the kernel gives the Agent PID "
        "0 for senders in other pods and it logs 'matched PID for the process is 0 ... Is the "
        "agent in host PID mode?'."
    ),
    Reason.PID_ZERO: (
        "The kernel did not give the sender's PID on an SO_PASSCRED socket inside this "
        "container, so no pod spec change will make origin detection work here: look for a "
        "sandboxed runtime (spec.runtimeClassName such as gVisor or Kata) or a seccomp/LSM "
        "profile (securityContext.seccompProfile, AppArmor) that filters SCM_CREDENTIALS, and "
        "run the Agent with the node's default runtime class."
    ),
    Reason.NO_CONTAINER_ID: (
        "The Agent's rule (the memory line on cgroup v1 or the empty-controller line on v2, "
        "last path element, a 64-hex, ECS or Garden ID) finds no container ID: mount the node's "
        "/proc at /host/proc and the node's /sys/fs/cgroup at /host/sys/fs/cgroup (procdir and "
        "cgroups volumes, hostPath, readOnly); on cgroup v1 the memory controller must be "
        "mounted; containers in cgroups not named by their runtime's ID (a custom cgroup "
        "parent) can only be tagged by client-side origin detection (DD_ENTITY_ID)."
    ),
    Reason.PRIVATE_CGROUPNS: (
        "This container runs in a private cgroup namespace, so its own cgroup reads '/' and "
        "the Agent warns 'Make sure to run with --cgroupns=host': run the Agent container in "
        "the host cgroup namespace (docker run --cgroupns host). On Kubernetes no pod field "
        "selects it: on cgroup v2 containerd gives every container that is not privileged "
        "(securityContext.privileged) a private one. Other pods' containers still resolve "
        "while selfcheck_origin_detection_resolution_ratio stays at 1."
    ),
    Reason.EACCES: procfs.REMEDIATIONS[Reason.EACCES],
    Reason.TIMEOUT: (
        "A datagram sent to an SO_PASSCRED socket in this container did not arrive: the "
        "DogStatsD socket path cannot work either; check the container's seccomp profile "
        "(securityContext.seccompProfile) and the node's kernel log."
    ),
    Reason.IO_ERROR: (
        "Reading the host procfs or using a Unix socket failed unexpectedly: check the procdir "
        "volume (hostPath /proc at /host/proc) and the node's kernel log."
    ),
}


@dataclass(frozen=True, slots=True)
class Sample:
    """Host processes read for step 4; only those under a runtime path are judged."""

    sampled: int = 0
    in_containers: int = 0
    resolved: int = 0
    unreadable: int = 0
    unresolved_examples: tuple[str, ...] = ()

    @property
    def ratio(self) -> float | None:
        return self.resolved / self.in_containers if self.in_containers else None


@dataclass(slots=True)
class Evidence:
    """Everything read for one run; ``judge`` turns it into an outcome without touching the host."""

    host_proc: Path
    cgroup_root: Path
    own_pid: int
    pid_view: PidView | None = None
    pid_view_error: OSError | None = None
    pid_ns_inode: int | None = None
    cgroup_ns_inode: int | None = None
    passcred: RoundTrip | None = None
    passcred_error: OSError | None = None
    cgroup_layout: str = "none"
    cgroup_version: int | None = None
    cgroup_error: OSError | None = None
    own_cgroup: str | None = None
    own_in_runtime: bool = False
    own_error: OSError | None = None
    sample: Sample = field(default_factory=Sample)

    @property
    def host_pid(self) -> int | None:
        """This process's PID in the host procfs's namespace."""
        if self.pid_view is None:
            return None
        return self.pid_view.nspid[0] if self.pid_view.nspid else self.pid_view.pid

    @property
    def container_id(self) -> str | None:
        return container_id_from_path(self.own_cgroup) if self.own_cgroup is not None else None

    @property
    def private_cgroupns(self) -> bool:
        return (
            self.own_cgroup == "/"
            and self.cgroup_ns_inode is not None
            and self.cgroup_ns_inode != INITIAL_CGROUP_NS_INODE
        )


def _inode(kind: str) -> int | None:
    try:
        return namespace_inode(kind)
    except OSError:
        return None


def _read_pid_namespace(ev: Evidence) -> None:
    ev.pid_ns_inode = _inode("pid")
    ev.cgroup_ns_inode = _inode("cgroup")
    try:
        ev.pid_view = read_pid_view(ev.host_proc)
    except OSError as error:
        ev.pid_view_error = error


def _read_cgroup_version(ev: Evidence) -> None:
    try:
        layout = detect_layout(read_mountinfo(), os.path.realpath(ev.cgroup_root))
    except OSError as error:
        ev.cgroup_error = error
        return
    ev.cgroup_layout = layout.version
    if layout.version != "none":
        ev.cgroup_version = layout.agent_version


def _read_own_cgroup(ev: Evidence) -> None:
    pid = ev.host_pid
    if pid is None or ev.cgroup_version is None:
        return
    try:
        lines = parse_proc_cgroup(read_proc_cgroup(ev.host_proc, pid))
    except OSError as error:
        ev.own_error = error
        return
    ev.own_cgroup = agent_cgroup_path(lines, ev.cgroup_version)
    ev.own_in_runtime = in_runtime_cgroup(lines)


def sample_processes(proc_root: Path, cgroup_version: int, size: int) -> Sample:
    """Apply the Agent's rule to an evenly spaced sample of ``size`` host processes."""
    pids = evenly_spaced(list_pids(proc_root), size)
    in_containers = resolved = unreadable = 0
    examples: list[str] = []
    for pid in pids:
        try:
            lines = parse_proc_cgroup(read_proc_cgroup(proc_root, pid))
        except OSError:
            unreadable += 1
            continue
        if not in_runtime_cgroup(lines):
            continue
        in_containers += 1
        path = agent_cgroup_path(lines, cgroup_version)
        if path is not None and container_id_from_path(path):
            resolved += 1
        elif len(examples) < MAX_EXAMPLES:
            examples.append(path if path is not None else "(no line for the Agent's controller)")
    return Sample(len(pids), in_containers, resolved, unreadable, tuple(examples))


def _passcred_timeout(config: Config) -> float:
    """Leave the runner's deadline room to report what happened."""
    return max(0.05, min(1.0, config.check_timeout / 2))


def gather(config: Config) -> Evidence:
    """Read every step; failures are kept as data for ``judge``."""
    ev = Evidence(config.host_proc, config.cgroup_root, os.getpid())
    _read_pid_namespace(ev)
    try:
        ev.passcred = round_trip(_passcred_timeout(config))
    except OSError as error:
        ev.passcred_error = error
    _read_cgroup_version(ev)
    _read_own_cgroup(ev)
    if ev.cgroup_version is not None:
        try:
            ev.sample = sample_processes(ev.host_proc, ev.cgroup_version, config.sample_size)
        except OSError:
            ev.sample = Sample()
    return ev


def details_of(ev: Evidence) -> dict[str, object]:
    """Small, flat facts for ``--verbose`` and ``/status``; never a label."""
    details: dict[str, object] = {
        "host_proc": str(ev.host_proc),
        "pid_namespace_inode": ev.pid_ns_inode,
        "initial_pid_namespace": ev.pid_ns_inode == INITIAL_PID_NS_INODE,
        "cgroup_namespace_inode": ev.cgroup_ns_inode,
        "initial_cgroup_namespace": ev.cgroup_ns_inode == INITIAL_CGROUP_NS_INODE,
        "cgroup_layout": ev.cgroup_layout,
        "sampled_processes": ev.sample.sampled,
        "container_processes": ev.sample.in_containers,
        "resolved_processes": ev.sample.resolved,
        "unreadable_processes": ev.sample.unreadable,
    }
    if ev.pid_view is not None:
        details.update(nspid=list(ev.pid_view.nspid), host_pid=ev.host_pid)
    if ev.passcred is not None:
        creds = ev.passcred.credentials
        details.update(
            passcred_sender_pid=ev.passcred.sender_pid,
            passcred_received_pid=creds.pid if creds is not None else None,
            passcred_socket=ev.passcred.address,
        )
    if ev.own_cgroup is not None:
        details.update(own_cgroup=ev.own_cgroup, container_id=ev.container_id)
    if ev.sample.unresolved_examples:
        details["unresolved_examples"] = list(ev.sample.unresolved_examples)
    return details


def figures_of(ev: Evidence) -> dict[str, float]:
    figures: dict[str, float] = {
        "sampled_processes": ev.sample.sampled,
        "container_processes": ev.sample.in_containers,
    }
    if ev.sample.ratio is not None:
        figures["resolution_ratio"] = round(ev.sample.ratio, 4)
    return figures


def _outcome(ev: Evidence, status: Status, reason: Reason, message: str) -> Outcome:
    remediation = REMEDIATIONS.get(reason, "") if status != Status.OK else ""
    return Outcome(
        status, reason, message, remediation, details=details_of(ev), figures=figures_of(ev)
    )


def _os_outcome(ev: Evidence, error: OSError, path: Path | str, what: str) -> Outcome:
    failure = os_failure(REMEDIATIONS, error, path, what)
    return _outcome(ev, failure.status, failure.reason, failure.message)


def _judge_pid_namespace(ev: Evidence) -> Outcome | None:
    status_path = ev.host_proc / "self" / "status"
    if ev.pid_view_error is not None:
        if ev.pid_view_error.errno == errno.ENOENT:
            return _outcome(
                ev,
                Status.FAILED,
                Reason.NOT_HOST_PID,
                f"this process is invisible in {ev.host_proc} "
                f"({describe(ev.pid_view_error, status_path)}): that procfs belongs to a PID "
                "namespace this process is not in, so DogStatsD senders arrive with PID 0",
            )
        return _os_outcome(ev, ev.pid_view_error, status_path, "read this process's status")
    view = ev.pid_view
    assert view is not None
    shared = view.levels == 1 if view.levels else view.pid == ev.own_pid
    if shared:
        return None
    return _outcome(
        ev,
        Status.FAILED,
        Reason.NOT_HOST_PID,
        f"{status_path} has NSpid {' '.join(map(str, view.nspid)) or '(none)'}: this process "
        f"runs in a PID namespace below the one {ev.host_proc} belongs to, so DogStatsD "
        "senders in other pods arrive with PID 0 and their metrics go out untagged",
    )


def _judge_passcred(ev: Evidence) -> Outcome | None:
    if ev.passcred_error is not None:
        return _os_outcome(
            ev, ev.passcred_error, "SO_PASSCRED datagram socket", "complete the round trip"
        )
    trip = ev.passcred
    assert trip is not None
    creds = trip.credentials
    if creds is not None and creds.pid == trip.sender_pid and creds.pid != 0:
        return None
    got = "no SCM_CREDENTIALS message" if creds is None else f"PID {creds.pid}"
    return _outcome(
        ev,
        Status.FAILED,
        Reason.PID_ZERO,
        f"a datagram from child PID {trip.sender_pid} to SO_PASSCRED socket {trip.address} "
        f"arrived with {got}: the Agent cannot tell who sent a DogStatsD packet",
    )


def _judge_cgroups(ev: Evidence) -> Outcome | None:
    if ev.cgroup_error is not None:
        return _os_outcome(ev, ev.cgroup_error, "/proc/self/mountinfo", "detect the cgroup version")
    if ev.cgroup_version is None:
        return _outcome(
            ev,
            Status.FAILED,
            Reason.NO_CONTAINER_ID,
            f"no cgroup hierarchy is mounted under {ev.cgroup_root}, so the Agent cannot map "
            "any PID to a container",
        )
    if ev.own_error is not None:
        path = ev.host_proc / str(ev.host_pid) / "cgroup"
        return _os_outcome(ev, ev.own_error, path, "read this process's cgroup")
    return None


def _judge_containers(ev: Evidence) -> Outcome:
    own = ev.own_cgroup
    if ev.own_in_runtime and ev.container_id is None:
        return _outcome(
            ev,
            Status.FAILED,
            Reason.NO_CONTAINER_ID,
            f"this container's cgroup {own or '(no line for the Agent controller)'} gives no "
            "container ID by the Agent's rule, so its metrics would go out untagged",
        )
    ratio = ev.sample.ratio
    if ratio is not None and ratio < SAMPLE_THRESHOLD:
        return _outcome(
            ev,
            Status.DEGRADED,
            Reason.NO_CONTAINER_ID,
            f"only {ev.sample.resolved} of {ev.sample.in_containers} sampled container "
            f"processes in {ev.host_proc} map to a container ID (e.g. "
            f"{ev.sample.unresolved_examples[0] if ev.sample.unresolved_examples else '?'})",
        )
    if ev.private_cgroupns:
        return _outcome(
            ev,
            Status.DEGRADED,
            Reason.PRIVATE_CGROUPNS,
            f"this process's cgroup reads '/' in a private cgroup namespace (inode "
            f"{ev.cgroup_ns_inode}, the host's is {INITIAL_CGROUP_NS_INODE}): the Agent cannot "
            "find its own container by cgroup",
        )
    return _outcome(ev, Status.OK, Reason.OK, _ok_message(ev))


def _ok_message(ev: Evidence) -> str:
    assert ev.passcred is not None
    own = (
        f"own container {ev.container_id[:12]}"
        if ev.container_id
        else f"not in a container (cgroup {ev.own_cgroup}), no container ID applies"
    )
    ratio = ev.sample.ratio
    sample = (
        f"{ev.sample.resolved}/{ev.sample.in_containers} sampled container processes resolve"
        if ratio is not None
        else f"no container processes among {ev.sample.sampled} sampled"
    )
    return f"host PID namespace, SO_PASSCRED PID {ev.passcred.sender_pid} matches; {own}; {sample}"


def judge(ev: Evidence) -> Outcome:
    """Steps in the order the Agent depends on them; the first broken one is the reason."""
    for step in (_judge_pid_namespace, _judge_passcred, _judge_cgroups):
        outcome = step(ev)
        if outcome is not None:
            return outcome
    return _judge_containers(ev)


def _procfs_missing(config: Config) -> Outcome | None:
    """``/host/proc`` where the Agent wants it, and a procfs (it has ``self``) at ``host_proc``."""
    self_link = config.host_proc / "self"
    if config.containerized and not path_exists(AGENT_HOST_PROC):
        where = f"{AGENT_HOST_PROC} does not exist"
    else:
        try:
            self_link.lstat()
        except (FileNotFoundError, NotADirectoryError) as error:
            where = f"{config.host_proc} is not a mounted procfs ({describe(error, self_link)})"
        except OSError as error:
            return os_failure(REMEDIATIONS, error, self_link, "look at the host procfs")
        else:
            return None
    return Outcome(
        Status.FAILED,
        Reason.PROCFS_MISSING,
        f"{where}: the Agent's PID-to-container lookup is off and DogStatsD metrics go out "
        "untagged without any error",
        REMEDIATIONS[Reason.PROCFS_MISSING],
        details={"host_proc": str(config.host_proc), "containerized": config.containerized},
    )


def run(ctx: CheckContext) -> Outcome:
    config = ctx.config
    return _procfs_missing(config) or judge(gather(config))


SPEC = register(
    CheckSpec(
        id="origin_detection",
        title="DogStatsD origin detection (hostPID plus the procdir mount)",
        run=run,
        proves=(
            "Step 1: this process shares the PID namespace /host/proc belongs to (NSpid in "
            "<host proc>/self/status has one entry; the /proc/self/ns/pid inode and whether it "
            "is the initial namespace are in details). Step 2: a datagram from a child process "
            "to an SO_PASSCRED socket in the abstract namespace arrives with the child's "
            "non-zero PID. Step 3: this process's <host proc>/<pid>/cgroup maps to its "
            "container ID by the Agent's exact rule (memory line on v1, empty controller on "
            "v2, last path element, the Agent's regex, .mount and crio-conmon- excluded), "
            "unless it is not in a container at all, which is fine. Step 4: the same rule maps "
            "an evenly spaced sample (SELFCHECK_SAMPLE, default 256) of host processes in pod "
            "or container cgroups; the share is the resolution ratio. A private cgroup "
            "namespace (own cgroup '/') is reported."
        ),
        why=(
            "With DD_DOGSTATSD_ORIGIN_DETECTION the Agent tags each DogStatsD packet with its "
            "sender's container by these steps, and every one fails silently: PID 0 is accepted "
            "untagged (only an expvar counter moves), a missing /host/proc disables the lookup "
            "without any error, and an unmatched cgroup is not counted at all."
        ),
        remediations=REMEDIATIONS,
        required_by_default=lambda config: config.origin_detection,
        required_because="required: DD_DOGSTATSD_ORIGIN_DETECTION is true",
        figures={
            "resolution_ratio": (
                "Share of sampled host processes in pod or container cgroups that map to a "
                "container ID by the Agent's rule (absent when none were sampled)."
            ),
            "sampled_processes": "Host processes read for the resolution ratio.",
            "container_processes": "Sampled processes whose cgroup is under a runtime path.",
        },
    )
)
