"""``origin_detection``: every origin-detection path the Agent has, each proven on its own.

The Agent tags a DogStatsD packet (and an APM payload) with its sender's container by one of
several mechanisms (docs/checks/origin_detection.md), and each fails silently:

- **uds**: the ``SO_PASSCRED`` PID of the packet, mapped through ``/host/proc/<pid>/cgroup``
  (needs hostPID and ``/host/proc``; ``DD_DOGSTATSD_ORIGIN_DETECTION``). Proven in four steps:
  the PID namespace (``NSpid`` of ``<host proc>/self/status`` has one entry), the
  ``SO_PASSCRED`` round trip from a child, this container's own PID to its ID, and a bounded
  sample of host processes in container cgroups (the ratio);
- **client inode** (``c:in-<inode>``, datadog-go 5.x, datadogpy, Agent 7.51+): for the sampled
  container processes, the inode their client sends from a private cgroup namespace (the
  client rule, ``selfcheck.host.client_origin``) must resolve through the Agent's inode map of
  the host cgroup tree (``selfcheck.host.inodes``); needs ``/host/proc`` and the cgroups
  mount, not hostPID;
- **client container ID** (``c:ci-<id>``): the ID those clients find (cgroup, then mountinfo)
  must be one the Agent's container-ID rule recognises;
- **external data** and **entity ID**: reported as configured; proving them needs the kubelet.

The client mechanisms are read only with ``DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT``. The
**receipt** reads the Agent's own ``dogstatsd-uds`` counters around one datagram of
selfcheck's. The status follows the mechanisms the Agent's configuration enables; with none
enabled, it says what the node would give if they were. Reading (``gather``) is kept apart
from judging (``judge``), which never touches the host.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from selfcheck.checks import procfs
from selfcheck.checks._common import os_failure
from selfcheck.config import Config
from selfcheck.context import CheckContext
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
from selfcheck.host.expvar import UdsVars, read_uds_vars
from selfcheck.host.files import describe, path_exists, read_text
from selfcheck.host.inodes import InodeMap, agent_hierarchy, inode_map_from_dirs
from selfcheck.host.namespaces import (
    INITIAL_CGROUP_NS_INODE,
    INITIAL_PID_NS_INODE,
    PidView,
    namespace_inode,
    read_pid_view,
)
from selfcheck.host.passcred import RoundTrip, round_trip
from selfcheck.host.procfs import evenly_spaced, list_pids
from selfcheck.host.sockets import Deadline, send_datagram
from selfcheck.host.view import HostView
from selfcheck.model import Outcome, Reason, Status
from selfcheck.registry import CheckSpec, register

# The Agent, when containerized, registers its PID and inode lookups only if this path
# exists (pkg/util/containers/metrics/system/collector_linux.go), whatever HOST_PROC says.
AGENT_HOST_PROC = Path("/host/proc")
AGENT_HOST_CGROUP = Path("/host/sys/fs/cgroup")
# Below this share of sampled container processes resolving, a mechanism is degraded.
SAMPLE_THRESHOLD = 0.9
MAX_EXAMPLES = 3
MOUNTINFO_CAP = 256 * 1024
# The receipt: how long the Agent gets to count a datagram before one retry, and the cap.
RECEIPT_SETTLE = 0.001
RECEIPT_RETRY = 0.1
EXPVAR_BUDGET = 0.5

INODE_CLIENTS = "clients that send their cgroup inode (datadog-go 5.x, datadogpy, Agent 7.51+)"
ID_CLIENTS = "clients that send their container ID (datadog-go, datadogpy, dd-trace, 7.35+)"
MECHANISMS = ("uds", "receipt", "client_inode", "client_container_id")
# The tagger's order in unified mode (datadog-agent comp/core/tagger/impl/tagger.go); a c:in-
# inode is first turned into a container ID. The legacy mode does not consult External Data.
UNIFIED_ORDER = ("uds", "client_container_id", "external_data", "entity_id", "external_data_pod")
LEGACY_ORDER = "legacy (DD_ORIGIN_DETECTION_UNIFIED false): External Data is not consulted"

REMEDIATIONS = {
    Reason.PROCFS_MISSING: (
        "Mount the node's /proc read-only at /host/proc: the chart's procdir volume (hostPath "
        "/proc, mountPath /host/proc, readOnly: true). In a container the Agent registers its "
        "PID-to-container and inode-to-container lookups only when /host/proc exists; without "
        "it DogStatsD metrics go out without container tags and no error is counted."
    ),
    Reason.NOT_HOST_PID: (
        "Run the pod in the node's PID namespace: spec.hostPID: true (Helm value "
        "datadog.useHostPID, default true), and mount the node's /proc, not a pod's, at "
        "/host/proc (procdir volume, hostPath /proc). Without it the kernel gives the Agent PID "
        "0 for senders in other pods and it logs 'matched PID for the process is 0 ... Is the "
        "agent in host PID mode?'. Where hostPID is not allowed (GKE Autopilot), set "
        "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT=true so clients' cgroup inodes are used."
    ),
    Reason.PID_ZERO: (
        "The sender's PID did not reach the receiver: selfcheck's own SO_PASSCRED round trip "
        "carried none, or the Agent's dogstatsd-uds.OriginDetectionErrors grew with "
        "selfcheck's datagram. Run the Agent's pod with spec.hostPID: true "
        "(datadog.useHostPID); if it already is, look for a sandboxed runtime "
        "(spec.runtimeClassName such as gVisor or Kata) or a seccomp/LSM profile "
        "(securityContext.seccompProfile, AppArmor) that filters SCM_CREDENTIALS."
    ),
    Reason.NO_CONTAINER_ID: (
        "The Agent's rule (the memory line on cgroup v1 or the empty-controller line on v2, "
        "last path element, a 64-hex, ECS or Garden ID) finds no container ID: mount the node's "
        "/proc at /host/proc and the node's /sys/fs/cgroup at /host/sys/fs/cgroup (procdir and "
        "cgroups volumes, hostPath, readOnly); on cgroup v1 the memory controller must be "
        "mounted; containers in cgroups not named by their runtime's ID (a custom cgroup "
        "parent) can only be tagged by DD_ENTITY_ID (the admission controller)."
    ),
    Reason.INODE_UNRESOLVED: (
        "The Agent resolves a client's c:in-<inode> through a map of the container cgroups "
        "under its cgroup root: mount the node's /sys/fs/cgroup read-only at "
        "/host/sys/fs/cgroup (the chart's cgroups volume) and /proc at /host/proc (procdir); "
        "on cgroup v1 the memory controller must be mounted there. Containers whose cgroup "
        "directory is not named by their ID (a sub-cgroup, a custom parent) cannot be "
        "resolved by inode: use DD_ENTITY_ID (the admission controller)."
    ),
    Reason.NOT_RECEIVED: (
        "The Agent's expvar answers but its dogstatsd-uds.Packets did not grow after "
        "selfcheck's datagram: the socket this pod writes to is not the one the Agent reads. "
        "Mount the socket's directory, not the file (the chart's dsdsocket volume, hostPath "
        "/var/run/datadog; a file bind mount goes stale when the Agent recreates the socket), "
        "with the same DD_DOGSTATSD_SOCKET as the Agent, and restart the pod."
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


# --- what is read --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """Host processes read for the uds step 4; only those under a runtime path are judged."""

    sampled: int = 0
    in_containers: int = 0
    resolved: int = 0
    unreadable: int = 0
    unresolved_examples: tuple[str, ...] = ()

    @property
    def ratio(self) -> float | None:
        return self.resolved / self.in_containers if self.in_containers else None


@dataclass(frozen=True, slots=True)
class ClientSample:
    """What the clients of the same sampled container processes would send, and its fate."""

    judged: int = 0
    inode_resolved: int = 0
    id_found: int = 0
    id_recognised: int = 0
    from_mountinfo: int = 0
    inode_examples: tuple[str, ...] = ()
    id_examples: tuple[str, ...] = ()
    not_walked: int = 0
    """Unresolved inodes of a capped walk: the Agent, walking all, may know them."""
    inode_total: int | None = None
    """Processes whose inode was looked up (none without an inode map); ``judged`` if unset."""
    named_misses: int = 0
    """Unresolved inodes of container-named directories: a fresh walk may hold them."""

    @property
    def inode_judged(self) -> int:
        total = self.judged if self.inode_total is None else self.inode_total
        return total - self.not_walked

    @property
    def inode_ratio(self) -> float | None:
        return self.inode_resolved / self.inode_judged if self.inode_judged else None

    @property
    def id_ratio(self) -> float | None:
        return self.id_recognised / self.judged if self.judged else None


@dataclass(frozen=True, slots=True)
class Receipt:
    """``dogstatsd-uds`` before and after selfcheck's datagram, and after a quiet window."""

    port: int
    before: UdsVars
    after: UdsVars
    quiet: UdsVars | None = None
    sent: int = 1
    retried: bool = False

    def delta(self, name: str, later: UdsVars | None = None, earlier: UdsVars | None = None) -> int:
        a, b = (earlier or self.before).get(name), (later or self.after).get(name)
        return b - a if a is not None and b is not None else 0

    @property
    def readable(self) -> bool:
        return self.before.get("Packets") is not None and self.after.get("Packets") is not None


@dataclass(slots=True)
class Evidence:
    """Everything read for one run; ``judge`` turns it into an outcome without the host."""

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
    # the client mechanisms
    cgroup_mount_missing: bool = False
    hierarchy: str | None = None
    inode_map: InodeMap | None = None
    clients: ClientSample = field(default_factory=ClientSample)
    own_inode: int | None = None
    # the Agent's configuration, as selfcheck's environment carries it
    uds_enabled: bool = False
    client_enabled: bool = False
    unified: bool = False
    external_env: bool = False
    entity_id: bool = False
    # the receipt
    receipt: Receipt | None = None
    receipt_note: str = "not read"

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
        return self.cgroup_ns_inode is not None and self.cgroup_ns_inode != INITIAL_CGROUP_NS_INODE

    @property
    def own_container_by_inode(self) -> str | None:
        """This container as the Agent finds a private-namespace client: by its cgroup inode."""
        if self.own_inode is None or self.inode_map is None:
            return None
        return self.inode_map.by_inode.get(self.own_inode)


def _inode(host: HostView, kind: str) -> int | None:
    try:
        return namespace_inode(kind, host.eyes.proc, host.eyes.pid)
    except OSError:
        return None


def _read_pid_namespace(ev: Evidence, host: HostView) -> None:
    """The viewed process (the Agent, or this one) as the host procfs numbers it: ``self``
    is this process, the Agent is read by its PID."""
    ev.pid_ns_inode = _inode(host, "pid")
    ev.cgroup_ns_inode = _inode(host, "cgroup")
    try:
        ev.pid_view = read_pid_view(ev.host_proc, host.eyes.pid)
    except OSError as error:
        ev.pid_view_error = error


def _read_cgroup_version(ev: Evidence, host: HostView) -> None:
    layout = host.cgroup_layout()
    if isinstance(layout, OSError):
        ev.cgroup_error = layout
        return
    ev.cgroup_layout = layout.version
    if layout.version != "none":
        ev.cgroup_version = layout.agent_version
        ev.hierarchy = agent_hierarchy(layout)


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


def _own_client_inode(host: HostView, cgroup_version: int) -> int | None:
    """The inode the viewed container's own client would send (datadog-go
    statsd/container_linux.go)."""
    mount = "/sys/fs/cgroup/memory" if cgroup_version == 1 else "/sys/fs/cgroup"
    try:
        return host.at(mount).stat().st_ino
    except OSError:
        return None


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


def sample_all(
    proc_root: Path,
    cgroup_version: int,
    size: int,
    inode_map: InodeMap | None = None,
    host_pids: list[int] | None = None,
) -> tuple[Sample, ClientSample]:
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
        tally.in_containers += 1
        path = agent_cgroup_path(lines, cgroup_version)
        if path is not None and container_id_from_path(path):
            tally.resolved += 1
        elif len(tally.examples) < MAX_EXAMPLES:
            tally.examples.append(
                path if path is not None else "(no line for the Agent's controller)"
            )
        if inode_map is not None:
            _judge_client_inode(tally, path, inode_map)
        _judge_client_id(tally, proc_root, pid, text, path)
    sample = Sample(
        len(pids), tally.in_containers, tally.resolved, tally.unreadable, tuple(tally.examples)
    )
    clients = ClientSample(
        tally.in_containers,
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
    return sample, clients


PASSCRED_BUDGET = 1.0
"""Seconds the SO_PASSCRED round trip may take at most, within half of what is left."""


def _cgroup_mount_missing(config: Config, host: HostView) -> bool:
    """In a container, the Agent's inode map needs the node's tree at /host/sys/fs/cgroup."""
    root = host.root.resolve(config.cgroup_root)
    defaults = ("/sys/fs/cgroup", str(AGENT_HOST_CGROUP))  # the fallback, or the missing mount
    missing = not path_exists(host.at(AGENT_HOST_CGROUP))
    return config.containerized and missing and root in defaults


def _read_inode_map(ev: Evidence, host: HostView) -> None:
    if ev.hierarchy is None or ev.cgroup_version is None:
        return
    ev.inode_map = _shared_inode_map(host)
    if ev.private_cgroupns:
        ev.own_inode = _own_client_inode(host, ev.cgroup_version)


def _configure(ev: Evidence, config: Config) -> None:
    ev.uds_enabled = config.origin_detection
    ev.client_enabled = config.origin_detection_client
    ev.unified = config.origin_detection_unified
    ev.external_env = config.external_env_present
    ev.entity_id = config.entity_id_present


def gather(
    config: Config,
    host: HostView,
    *,
    passcred_budget: float = PASSCRED_BUDGET,
    receipt_budget: float = 0.25,
) -> Evidence:
    """Read every mechanism from the cycle's host view; failures are kept as data for
    ``judge``. The mount table, host listing and cgroup tree are the ones every other check
    of the cycle reads."""
    ev = Evidence(host.host_proc, host.cgroup_root, host.eyes.numeric_pid)
    _configure(ev, config)
    _read_pid_namespace(ev, host)
    try:
        ev.passcred = round_trip(passcred_budget)
    except OSError as error:
        ev.passcred_error = error
    _read_cgroup_version(ev, host)
    _read_own_cgroup(ev)
    ev.cgroup_mount_missing = _cgroup_mount_missing(config, host)
    if not ev.cgroup_mount_missing:
        _read_inode_map(ev, host)
    pids = host.host_pids()
    host_pids = None if isinstance(pids, OSError) else pids
    # Without a cgroup layout the uds line has already failed; the sample still tells what
    # the clients would send (their IDs need no cgroup mount on the Agent's side).
    version = ev.cgroup_version if ev.cgroup_version is not None else 2
    try:
        ev.sample, ev.clients = sample_all(
            ev.host_proc, version, config.sample_size, ev.inode_map, host_pids
        )
        if _missed(ev) and _refreshed_inode_map(ev, host):  # the Agent walks again on a miss
            ev.sample, ev.clients = sample_all(
                ev.host_proc, version, config.sample_size, ev.inode_map, host_pids
            )
    except OSError:
        ev.sample, ev.clients = Sample(), ClientSample()
    gather_receipt(ev, config, host, receipt_budget)
    return ev


def _missed(ev: Evidence) -> bool:
    """A sampled container's inode, or this container's own, not in the map: what a walk of
    today's tree could change (directories without a container's name never enter it)."""
    own_missing = ev.own_inode is not None and ev.own_container_by_inode is None
    return ev.inode_map is not None and (ev.clients.named_misses > 0 or own_missing)


def _refreshed_inode_map(ev: Evidence, host: HostView) -> bool:
    """A fresh walk when the map came from the last cycle's; ``False`` when it was fresh."""
    before = host.cgroup_tree()
    after = host.refresh_cgroup_tree()
    if after is before or isinstance(after, OSError):
        return False
    _read_inode_map(ev, host)
    return True


# --- the receipt -----------------------------------------------------------------------------


def _find_expvar(config: Config, deadline: Deadline) -> tuple[UdsVars | None, str]:
    notes: list[str] = []
    for port in config.expvar_ports:
        try:
            found = read_uds_vars(port, deadline)
        except OSError as error:
            notes.append(describe(error, f"127.0.0.1:{port}"))
            continue
        if found.counters is not None:
            return found, ""
        why = "truncated before" if found.truncated else "without"
        notes.append(
            f"127.0.0.1:{port}/debug/vars: HTTP {found.status}, {found.body_bytes} bytes "
            f"read, {why} a dogstatsd-uds map"
        )
        if found.truncated or found.status == 200:
            return found, "; ".join(notes)
    return None, "; ".join(notes) or "no expvar port"


def gather_receipt(ev: Evidence, config: Config, host: HostView, budget: float) -> None:
    """``dogstatsd-uds`` before and after one datagram of selfcheck's; see ``judge_receipt``."""
    if config.dogstatsd_mode != "send":
        ev.receipt_note = "not sent (SELFCHECK_DOGSTATSD_MODE=connect)"
        return
    if not host.eyes.shares_loopback:
        ev.receipt_note = (
            "skipped: the Agent's expvar listens on 127.0.0.1 of its own network namespace, "
            "out of reach from another pod (node mode)"
        )
        return
    deadline = Deadline(budget)
    before, note = _find_expvar(config, deadline)
    if before is None or before.counters is None:
        ev.receipt_note = note
        return
    from selfcheck.checks.dogstatsd_socket import heartbeat

    began = time.monotonic()
    try:
        send_datagram(host.at(config.dogstatsd_socket), heartbeat(config.heartbeat_metric))
    except OSError as error:
        ev.receipt_note = f"not sent: {describe(error, config.dogstatsd_socket)}"
        return
    try:
        ev.receipt = _after_send(before, deadline, began)
    except OSError as error:
        ev.receipt_note = f"not read after the datagram: {describe(error)}"
        return
    ev.receipt_note = "read"


def _after_send(before: UdsVars, deadline: Deadline, began: float) -> Receipt:
    """Read after the datagram, once more if ``Packets`` has not moved yet, then a quiet window.

    The quiet window (no datagram of ours, as long as the send window) is read only when
    ``OriginDetectionErrors`` grew: it tells whether the errors came with our datagram or
    from other senders too.
    """
    time.sleep(RECEIPT_SETTLE)
    after = read_uds_vars(before.port, deadline)
    receipt = Receipt(before.port, before, after)
    retried = False
    if receipt.delta("Packets") < 1 and deadline.left() > RECEIPT_RETRY:
        time.sleep(RECEIPT_RETRY)
        after, retried = read_uds_vars(before.port, deadline), True
    window = time.monotonic() - began
    quiet = None
    receipt = Receipt(before.port, before, after, None, 1, retried)
    if receipt.delta("OriginDetectionErrors") > 0 and deadline.left() > window:
        time.sleep(window)
        quiet = read_uds_vars(before.port, deadline)
    return Receipt(before.port, before, after, quiet, 1, retried)


# --- judging ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """One mechanism's result: what happens to the metrics of the clients that depend on it."""

    status: Status
    reason: Reason
    words: str
    enabled: bool
    facts: dict[str, object] = field(default_factory=dict)
    headline: str = ""
    """The short form for the check's message when the mechanism works (``words`` otherwise)."""

    def to_json(self) -> dict[str, object]:
        return {
            "status": str(self.status),
            "reason": str(self.reason),
            "enabled": self.enabled,
            "says": self.words,
            **self.facts,
        }


def _uds_failure(ev: Evidence) -> tuple[Status, Reason, str] | None:
    for step in (_judge_pid_namespace, _judge_passcred, _judge_cgroups, _judge_own_container):
        failed = step(ev)
        if failed is not None:
            return failed
    return None


def _judge_pid_namespace(ev: Evidence) -> tuple[Status, Reason, str] | None:
    status_path = ev.host_proc / "self" / "status"
    if ev.pid_view_error is not None:
        if ev.pid_view_error.errno == errno.ENOENT:
            return (
                Status.FAILED,
                Reason.NOT_HOST_PID,
                f"this process is invisible in {ev.host_proc} "
                f"({describe(ev.pid_view_error, status_path)}): that procfs belongs to a PID "
                "namespace this process is not in, so senders arrive with PID 0",
            )
        return _os_verdict(ev.pid_view_error, status_path, "read this process's status")
    view = ev.pid_view
    assert view is not None
    shared = view.levels == 1 if view.levels else view.pid == ev.own_pid
    if shared:
        return None
    return (
        Status.FAILED,
        Reason.NOT_HOST_PID,
        f"{status_path} has NSpid {' '.join(map(str, view.nspid)) or '(none)'}: this process "
        f"runs in a PID namespace below the one {ev.host_proc} belongs to (no hostPID), so "
        "senders in other pods arrive with PID 0",
    )


def _os_verdict(error: OSError, path: Path | str, what: str) -> tuple[Status, Reason, str]:
    failure = os_failure(REMEDIATIONS, error, path, what)
    return failure.status, failure.reason, failure.message


def _judge_passcred(ev: Evidence) -> tuple[Status, Reason, str] | None:
    if ev.passcred_error is not None:
        return _os_verdict(
            ev.passcred_error, "SO_PASSCRED datagram socket", "complete the round trip"
        )
    trip = ev.passcred
    assert trip is not None
    creds = trip.credentials
    if creds is not None and creds.pid == trip.sender_pid and creds.pid != 0:
        return None
    got = "no SCM_CREDENTIALS message" if creds is None else f"PID {creds.pid}"
    return (
        Status.FAILED,
        Reason.PID_ZERO,
        f"a datagram from child PID {trip.sender_pid} to SO_PASSCRED socket {trip.address} "
        f"arrived with {got}: the Agent cannot tell who sent a DogStatsD packet",
    )


def _judge_cgroups(ev: Evidence) -> tuple[Status, Reason, str] | None:
    if ev.cgroup_error is not None:
        return _os_verdict(ev.cgroup_error, "/proc/self/mountinfo", "detect the cgroup version")
    if ev.cgroup_version is None:
        return (
            Status.FAILED,
            Reason.NO_CONTAINER_ID,
            f"no cgroup hierarchy is mounted under {ev.cgroup_root}, so the Agent cannot map "
            "any PID to a container",
        )
    if ev.own_error is not None:
        path = ev.host_proc / str(ev.host_pid) / "cgroup"
        return _os_verdict(ev.own_error, path, "read this process's cgroup")
    return None


def _judge_own_container(ev: Evidence) -> tuple[Status, Reason, str] | None:
    if ev.own_in_runtime and ev.container_id is None:
        return (
            Status.FAILED,
            Reason.NO_CONTAINER_ID,
            f"this container's cgroup {ev.own_cgroup or '(no line for the Agent controller)'} "
            "gives no container ID by the Agent's rule, so its metrics go out untagged",
        )
    ratio = ev.sample.ratio
    if ratio is not None and ratio < SAMPLE_THRESHOLD:
        example = ev.sample.unresolved_examples[0] if ev.sample.unresolved_examples else "?"
        return (
            Status.DEGRADED,
            Reason.NO_CONTAINER_ID,
            f"only {ev.sample.resolved} of {ev.sample.in_containers} sampled container "
            f"processes in {ev.host_proc} map to a container ID (e.g. {example})",
        )
    return None


def _sample_words(resolved: int, total: int, what: str) -> str:
    return (
        f"{resolved}/{total} sampled container processes {what}"
        if total
        else ("no container process sampled")
    )


def judge_uds(ev: Evidence) -> Verdict:
    failure = _uds_failure(ev)
    facts: dict[str, object] = {"sample_ratio": _round(ev.sample.ratio)}
    if failure is not None:
        status, reason, words = failure
        lead = (
            "UDS origin detection is off (no hostPID)"
            if reason == Reason.NOT_HOST_PID
            else "UDS origin detection does not work"
        )
        return Verdict(status, reason, f"{lead}: {words}", ev.uds_enabled, facts)
    assert ev.passcred is not None
    if ev.container_id:
        own = f"own container {ev.container_id[:12]}"
    elif ev.private_cgroupns and ev.own_cgroup == "/":
        found = ev.own_container_by_inode
        own = (
            "private cgroup namespace: the Agent's own container is found by inode "
            f"({found[:12]}), not by its cgroup"
            if found
            else "private cgroup namespace: own cgroup reads '/', other containers still resolve"
        )
    else:
        own = f"not in a container (cgroup {ev.own_cgroup}), no container ID applies"
    words = (
        f"UDS origin detection works: host PID namespace, SO_PASSCRED PID "
        f"{ev.passcred.sender_pid} matches; {own}; "
        f"{_sample_words(ev.sample.resolved, ev.sample.in_containers, 'resolve')}"
    )
    return Verdict(Status.OK, Reason.OK, words, ev.uds_enabled, facts)


def _ratio_verdict(
    ratio: float | None,
    reason: Reason,
    *,
    good: str,
    bad: str,
    enabled: bool,
    facts: dict[str, object],
    headline: str = "",
) -> Verdict:
    if ratio is None or ratio >= SAMPLE_THRESHOLD:
        return Verdict(Status.OK, Reason.OK, good, enabled, facts, headline)
    status = Status.FAILED if ratio == 0 else Status.DEGRADED
    return Verdict(status, reason, bad, enabled, facts)


def judge_client_inode(ev: Evidence) -> Verdict:
    facts: dict[str, object] = {}
    enabled = ev.client_enabled
    if ev.cgroup_mount_missing:
        return Verdict(
            Status.FAILED,
            Reason.INODE_UNRESOLVED,
            f"{INODE_CLIENTS} are not tagged: {AGENT_HOST_CGROUP} is not mounted (the chart's "
            "cgroups volume), so the Agent's inode map holds only this container's own tree",
            enabled,
        )
    cmap = ev.inode_map
    if cmap is None:
        return Verdict(
            Status.FAILED,
            Reason.INODE_UNRESOLVED,
            f"{INODE_CLIENTS} are not tagged: no cgroup hierarchy the Agent walks is mounted "
            f"under {ev.cgroup_root} (the cgroups volume), so it has no inode map",
            enabled,
        )
    facts.update(
        hierarchy=cmap.hierarchy,
        map_containers=cmap.containers,
        map_dirs_walked=cmap.dirs_walked,
        map_truncated=cmap.truncated,
        ratio=_round(ev.clients.inode_ratio),
    )
    if ev.clients.inode_examples:
        facts["unresolved_examples"] = list(ev.clients.inode_examples)
    if ev.private_cgroupns:
        facts.update(own_inode=ev.own_inode, own_container=ev.own_container_by_inode)
    tally = _sample_words(ev.clients.inode_resolved, ev.clients.inode_judged, "resolve by inode")
    if ev.clients.not_walked:
        facts["not_walked"] = ev.clients.not_walked
        tally += f" ({ev.clients.not_walked} more unknown: the walk stopped at its cap)"
    still = "still " if _uds_failure(ev) is not None else ""
    return _ratio_verdict(
        ev.clients.inode_ratio,
        Reason.INODE_UNRESOLVED,
        headline=f"{INODE_CLIENTS} are {still}tagged ({tally})",
        good=f"{INODE_CLIENTS} are tagged: {tally} through the Agent's map of "
        f"{cmap.containers} container cgroups in {cmap.hierarchy}",
        bad=f"{INODE_CLIENTS} are not all tagged: only {tally} through the Agent's map of "
        f"{cmap.containers} container cgroups in {cmap.hierarchy}",
        enabled=enabled,
        facts=facts,
    )


def judge_client_id(ev: Evidence) -> Verdict:
    c = ev.clients
    facts: dict[str, object] = {
        "ratio": _round(c.id_ratio),
        "found": c.id_found,
        "from_mountinfo": c.from_mountinfo,
    }
    if c.id_examples:
        facts["unrecognised_examples"] = list(c.id_examples)
    tally = _sample_words(c.id_recognised, c.judged, "give an ID the Agent recognises")
    return _ratio_verdict(
        c.id_ratio,
        Reason.NO_CONTAINER_ID,
        headline=f"clients that send their container ID are tagged ({tally})",
        good=f"{ID_CLIENTS} are tagged where the Agent knows the container: {tally}",
        bad=f"{ID_CLIENTS} are not all tagged: only {tally}",
        enabled=ev.client_enabled,
        facts=facts,
    )


def judge_receipt(ev: Evidence) -> Verdict | None:
    """The Agent's own counters around selfcheck's datagram, read honestly.

    ``Packets`` counts every client's packets, so growth by at least the one sent is
    necessary, not sufficient: it is conclusive only when it grew by exactly one, and said to
    be "consistent" otherwise. No growth after a retry is ``not_received``. Errors that grew
    with the datagram are ``pid_zero``; the quiet window says whether other senders moved
    them too.
    """
    r = ev.receipt
    if r is None or not r.readable:
        return None
    grown = r.delta("Packets")
    errors = r.delta("OriginDetectionErrors")
    facts: dict[str, object] = {
        "port": r.port,
        "packets_delta": grown,
        "origin_errors_delta": errors,
        "retried": r.retried,
        "body_bytes": r.after.body_bytes,
    }
    enabled = ev.uds_enabled or ev.client_enabled
    if grown < r.sent:
        return Verdict(
            Status.FAILED,
            Reason.NOT_RECEIVED,
            f"the Agent did not receive selfcheck's datagram: dogstatsd-uds.Packets on "
            f"127.0.0.1:{r.port} did not grow{' after a retry' if r.retried else ''}",
            enabled,
            facts,
        )
    if errors > 0:
        quiet = r.delta("OriginDetectionErrors", r.quiet, r.after) if r.quiet else None
        facts["quiet_window_errors"] = quiet
        others = (
            "; other senders moved it too in a quiet window"
            if quiet
            else " and not in a quiet window"
        )
        return Verdict(
            Status.FAILED,
            Reason.PID_ZERO,
            f"the Agent received selfcheck's datagram but could not attribute a sender: "
            f"OriginDetectionErrors grew by {errors}{others}",
            ev.uds_enabled,
            facts,
        )
    conclusive = grown == r.sent
    facts["conclusive"] = conclusive
    how = "" if conclusive else f" (consistent, not conclusive: Packets grew by {grown})"
    return Verdict(
        Status.OK,
        Reason.OK,
        f"the Agent counted selfcheck's datagram with no origin error{how}",
        enabled,
        facts,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


_SEVERITY = {Status.OK: 0, Status.DEGRADED: 1, Status.FAILED: 2}


def verdicts(ev: Evidence) -> dict[str, Verdict]:
    found = {
        "uds": judge_uds(ev),
        "receipt": judge_receipt(ev),
        "client_inode": judge_client_inode(ev),
        "client_container_id": judge_client_id(ev),
    }
    return {name: v for name, v in found.items() if v is not None}


def _config_words(ev: Evidence) -> str:
    if not (ev.uds_enabled or ev.client_enabled):
        return (
            "origin detection is not enabled in the Agent (DD_DOGSTATSD_ORIGIN_DETECTION and "
            "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT false); if it were: "
        )
    if not ev.client_enabled:
        return ""
    if not ev.uds_enabled:
        return "UDS origin detection is disabled (DD_DOGSTATSD_ORIGIN_DETECTION false); "
    return ""


def _short(verdict: Verdict) -> str:
    return verdict.headline if verdict.status == Status.OK and verdict.headline else verdict.words


def _message(ev: Evidence, found: dict[str, Verdict]) -> str:
    parts = [found["uds"].words]
    if ev.client_enabled or not ev.uds_enabled:
        parts += [_short(found["client_inode"]), _short(found["client_container_id"])]
    else:
        parts.append(
            "client-sent origins (c:in-, c:ci-) are ignored (DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT "
            "false)"
        )
    if "receipt" in found:
        parts.append(found["receipt"].words)
    return _config_words(ev) + "; ".join(parts)


def details_of(ev: Evidence, found: dict[str, Verdict]) -> dict[str, object]:
    """Small facts for ``--verbose`` and ``/status``, one entry per mechanism; never a label."""
    mechanisms: dict[str, object] = {name: v.to_json() for name, v in found.items()}
    mechanisms["external_data"] = {
        "configured": ev.external_env,
        "enabled": ev.client_enabled and ev.unified,
        "says": "DD_EXTERNAL_ENV is "
        + ("set" if ev.external_env else "not set")
        + " in this container; External Data is resolved through the kubelet, not provable here",
    }
    mechanisms["entity_id"] = {
        "configured": ev.entity_id,
        "says": "DD_ENTITY_ID is "
        + ("set" if ev.entity_id else "not set")
        + " in this container; the entity ID is resolved through the kubelet, not provable here",
    }
    if "receipt" not in found:
        mechanisms["receipt"] = {"status": "not_read", "says": ev.receipt_note}
    details: dict[str, object] = {
        "host_proc": str(ev.host_proc),
        "mechanisms": mechanisms,
        "resolution_order": list(UNIFIED_ORDER) if ev.unified else LEGACY_ORDER,
        "origin_detection_enabled": ev.uds_enabled,
        "origin_detection_client": ev.client_enabled,
        "origin_detection_unified": ev.unified,
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


def figures_of(ev: Evidence, found: dict[str, Verdict]) -> dict[str, float]:
    figures: dict[str, float] = {
        "sampled_processes": ev.sample.sampled,
        "container_processes": ev.sample.in_containers,
        "external_data_configured": float(ev.external_env),
        "entity_id_configured": float(ev.entity_id),
    }
    if ev.sample.ratio is not None:
        figures["resolution_ratio"] = round(ev.sample.ratio, 4)
    if ev.clients.inode_ratio is not None:
        figures["inode_resolution_ratio"] = round(ev.clients.inode_ratio, 4)
    if ev.clients.id_ratio is not None:
        figures["client_id_recognised_ratio"] = round(ev.clients.id_ratio, 4)
    if ev.inode_map is not None:
        figures["inode_map_containers"] = ev.inode_map.containers
    for name, verdict in found.items():
        figures[f"mechanism_{name}_ok"] = float(verdict.status.is_success)
        figures[f"mechanism_{name}_enabled"] = float(verdict.enabled)
    return figures


def judge(ev: Evidence) -> Outcome:
    """Each mechanism judged on its own; the worst enabled one gives the status and reason.

    With none enabled the Agent tags nothing by origin, so nothing is lost on this node: the
    check is ``ok`` and its message says what each mechanism would give if it were enabled.
    """
    found = verdicts(ev)
    counted = [v for v in found.values() if v.enabled]
    status, reason = Status.OK, Reason.OK
    if counted:
        worst = max(counted, key=lambda v: _SEVERITY.get(v.status, 2))
        status, reason = worst.status, worst.reason
    remediation = REMEDIATIONS.get(reason, "") if status != Status.OK else ""
    return Outcome(
        status,
        reason,
        _message(ev, found),
        remediation,
        details=details_of(ev, found),
        figures=figures_of(ev, found),
    )


def _procfs_missing(config: Config, host: HostView) -> Outcome | None:
    """``/host/proc`` where the Agent wants it, and a procfs (it has ``self``) at ``host_proc``."""
    self_link = host.host_proc / "self"
    if config.containerized and not path_exists(host.at(AGENT_HOST_PROC)):
        where = f"{AGENT_HOST_PROC} does not exist (the procdir mount is missing)"
    else:
        try:
            self_link.lstat()
        except (FileNotFoundError, NotADirectoryError) as error:
            where = f"{config.host_proc} is not a mounted procfs ({describe(error, self_link)})"
        except OSError as error:
            return os_failure(REMEDIATIONS, error, self_link, "look at the host procfs")
        else:
            return None
    lost = {"status": "failed", "reason": "procfs_missing", "enabled": True}
    return Outcome(
        Status.FAILED,
        Reason.PROCFS_MISSING,
        f"{where}: the Agent registers no PID-to-container and no inode-to-container lookup, "
        "so UDS origin detection and clients that send their cgroup inode are untagged, "
        "without any error",
        REMEDIATIONS[Reason.PROCFS_MISSING],
        details={
            "host_proc": str(config.host_proc),
            "containerized": config.containerized,
            "mechanisms": {
                "uds": {**lost, "enabled": config.origin_detection},
                "client_inode": {**lost, "enabled": config.origin_detection_client},
            },
        },
        figures={
            "mechanism_uds_ok": 0.0,
            "mechanism_uds_enabled": float(config.origin_detection),
            "mechanism_client_inode_ok": 0.0,
            "mechanism_client_inode_enabled": float(config.origin_detection_client),
            "mechanism_client_container_id_enabled": float(config.origin_detection_client),
        },
    )


def _shared_inode_map(host: HostView) -> InodeMap | None:
    """The Agent's inode map from the cycle's cgroup tree (the same rule, the same walk)."""
    tree = host.cgroup_tree()
    if isinstance(tree, OSError):
        return None
    dirs = ((d.path, d.name, d.inode) for d in tree.dirs)
    return inode_map_from_dirs(tree.top, dirs, walked=len(tree.dirs), truncated=tree.truncated)


def run(ctx: CheckContext) -> Outcome:
    config = ctx.config
    missing = _procfs_missing(config, ctx.host)
    if missing is not None:
        return missing
    # The round trip may take half of what the runner's deadline leaves, the receipt a quarter.
    evidence = gather(
        config,
        ctx.host,
        passcred_budget=ctx.budget(PASSCRED_BUDGET, 0.5),
        receipt_budget=ctx.budget(EXPVAR_BUDGET, 0.25),
    )
    return judge(evidence)


_FIGURES = {
    "resolution_ratio": (
        "uds: share of sampled host processes in pod or container cgroups that map to a "
        "container ID by the Agent's PID rule (absent when none were sampled)."
    ),
    "sampled_processes": "Host processes read for the resolution ratios.",
    "container_processes": "Sampled processes whose cgroup is under a runtime path.",
    "inode_resolution_ratio": (
        "client inode: share of sampled container processes whose client's cgroup inode "
        "resolves through the Agent's inode map (absent when none were sampled)."
    ),
    "client_id_recognised_ratio": (
        "client container ID: share of sampled container processes whose client finds an ID "
        "the Agent's container-ID rule recognises."
    ),
    "inode_map_containers": "Container cgroups in the Agent's inode map of the host tree.",
    "external_data_configured": "1 when DD_EXTERNAL_ENV is set in this container.",
    "entity_id_configured": "1 when DD_ENTITY_ID is set in this container.",
    **{
        f"mechanism_{name}_ok": (
            f"1 when the {name} origin-detection mechanism works on this node, 0 when it does "
            "not (absent when it was not judged)."
        )
        for name in MECHANISMS
    },
    **{
        f"mechanism_{name}_enabled": (
            f"1 when the Agent's configuration enables the {name} mechanism."
        )
        for name in MECHANISMS
    },
}

SPEC = register(
    CheckSpec(
        id="origin_detection",
        title="Origin detection: UDS credentials, client inode and ID, the Agent's receipt",
        run=run,
        proves=(
            "Each mechanism on its own line of details. uds, Step 1: this process shares the "
            "PID namespace /host/proc belongs to (NSpid in <host proc>/self/status has one "
            "entry). Step 2: a datagram from a child process to an SO_PASSCRED socket in the "
            "abstract namespace arrives with the child's non-zero PID. Step 3: this process's "
            "<host proc>/<pid>/cgroup maps to its container ID by the Agent's exact rule "
            "(memory line on v1, empty controller on v2, last path element, the Agent's regex, "
            ".mount and crio-conmon- excluded); a private cgroup namespace is noted, not "
            "failed. Step 4: the same rule maps an evenly spaced sample (SELFCHECK_SAMPLE, "
            "default 256) of host processes in container cgroups. client_inode: for those "
            "processes, the inode their client sends from a private cgroup namespace (the "
            "datadog-go and datadogpy rule) resolves through the Agent's inode map of the host "
            "cgroup tree (the memory hierarchy on v1, the unified one on v2, container-named "
            "directories only, bounded walk). client_container_id: the ID their client finds "
            "(cgroup, then mountinfo) is one the Agent recognises. external_data, entity_id: "
            "reported as configured, not provable without the kubelet. receipt: where the "
            "Agent's expvar answers (DD_EXPVAR_PORT, else 5000, then 6000), dogstatsd-uds "
            "Packets grows after selfcheck's datagram and OriginDetectionErrors does not."
        ),
        why=(
            "The Agent tags each DogStatsD packet with its sender's container by these paths "
            "and every one fails silently: PID 0 is accepted untagged (only an expvar counter "
            "moves), a missing /host/proc disables the PID and inode lookups without any "
            "error, and an unmatched cgroup or inode is not counted at all."
        ),
        remediations=REMEDIATIONS,
        required_by_default=lambda config: config.origin_detection,
        required_because="required: DD_DOGSTATSD_ORIGIN_DETECTION is true",
        figures=_FIGURES,
    )
)
