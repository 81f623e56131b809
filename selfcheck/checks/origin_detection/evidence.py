"""What ``origin_detection`` reads, from the cycle's host view only; the judges never read.

``gather`` takes every fact from ``HostView`` (the viewed container's mount table, the host
listing, the cgroup tree of the cycle) and keeps failures as data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from selfcheck.config import UDP, Config
from selfcheck.host.cgroup import (
    agent_cgroup_path,
    container_id_from_path,
    in_runtime_cgroup,
    parse_proc_cgroup,
    read_proc_cgroup,
)
from selfcheck.host.files import describe, path_exists
from selfcheck.host.inodes import InodeMap, agent_hierarchy, inode_map_from_dirs
from selfcheck.host.namespaces import (
    INITIAL_CGROUP_NS_INODE,
    PidView,
    namespace_inode,
    read_pid_view,
)
from selfcheck.host.passcred import RoundTrip, proven_round_trip
from selfcheck.host.receipt import Receipt, find_expvar, heartbeat, read_after
from selfcheck.host.sampling import Sample, sample_all
from selfcheck.host.sockets import Deadline, send_datagram
from selfcheck.host.view import HostView

# The Agent, when containerized, registers its PID and inode lookups only if this path
# exists (pkg/util/containers/metrics/system/collector_linux.go), whatever HOST_PROC says.
AGENT_HOST_PROC = Path("/host/proc")
AGENT_HOST_CGROUP = Path("/host/sys/fs/cgroup")
EXPVAR_BUDGET = 0.5


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
    own_inode: int | None = None
    # the Agent's configuration, as selfcheck's environment carries it
    uds_enabled: bool = False
    client_enabled: bool = False
    unified: bool = False
    external_env: bool = False
    entity_id: bool = False
    over_udp: bool = False
    """Applications send over UDP (no DD_DOGSTATSD_SOCKET): no sender credentials arrive."""
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
    ev.over_udp = config.dogstatsd_transport == UDP


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
        ev.passcred = proven_round_trip(passcred_budget)
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
        ev.sample = sample_all(ev.host_proc, version, config.sample_size, ev.inode_map, host_pids)
        if _missed(ev) and _refreshed_inode_map(ev, host):  # the Agent walks again on a miss
            ev.sample = sample_all(
                ev.host_proc, version, config.sample_size, ev.inode_map, host_pids
            )
    except OSError:
        ev.sample = Sample()
    gather_receipt(ev, config, host, receipt_budget)
    return ev


def _missed(ev: Evidence) -> bool:
    """A sampled container's inode, or this container's own, not in the map: what a walk of
    today's tree could change (directories without a container's name never enter it)."""
    own_missing = ev.own_inode is not None and ev.own_container_by_inode is None
    return ev.inode_map is not None and (ev.sample.named_misses > 0 or own_missing)


def _refreshed_inode_map(ev: Evidence, host: HostView) -> bool:
    """A fresh walk when the map came from the last cycle's; ``False`` when it was fresh."""
    before = host.cgroup_tree()
    after = host.refresh_cgroup_tree()
    if after is before or isinstance(after, OSError):
        return False
    _read_inode_map(ev, host)
    return True


def _shared_inode_map(host: HostView) -> InodeMap | None:
    """The Agent's inode map from the cycle's cgroup tree (the same rule, the same walk)."""
    tree = host.cgroup_tree()
    if isinstance(tree, OSError):
        return None
    dirs = ((d.path, d.name, d.inode) for d in tree.dirs)
    return inode_map_from_dirs(tree.top, dirs, walked=len(tree.dirs), truncated=tree.truncated)


# --- the receipt -----------------------------------------------------------------------------


def gather_receipt(ev: Evidence, config: Config, host: HostView, budget: float) -> None:
    """``dogstatsd-uds`` before and after one datagram of selfcheck's; see ``judge_receipt``."""
    if config.dogstatsd_mode != "send":
        ev.receipt_note = "not sent (SELFCHECK_DOGSTATSD_MODE=connect)"
        return
    if ev.over_udp:
        ev.receipt_note = (
            "not read: applications send over UDP, where the Agent attributes no sender and "
            "counts no origin error (dogstatsd_udp reads its dogstatsd-udp receipt)"
        )
        return
    unreachable = host.eyes.loopback_unknown()
    if unreachable:
        ev.receipt_note = (
            f"skipped: the Agent's expvar listens on its own 127.0.0.1, and {unreachable}"
        )
        return
    deadline = Deadline(budget)
    before, note = find_expvar(config, deadline)
    if before is None or before.counters is None:
        ev.receipt_note = note
        return
    began = time.monotonic()
    try:
        send_datagram(host.at(config.dogstatsd_socket), heartbeat(config.heartbeat_metric))
    except OSError as error:
        ev.receipt_note = f"not sent: {describe(error, config.dogstatsd_socket)}"
        return
    try:
        ev.receipt = read_after(before, deadline, began)
    except OSError as error:
        ev.receipt_note = f"not read after the datagram: {describe(error)}"
        return
    ev.receipt_note = "read"
