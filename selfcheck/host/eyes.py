"""Whose eyes a cycle looks through: the Agent container's, or selfcheck's own.

A verdict is about the Agent container. With hostPID the Agent's processes are visible in
the host procfs and its mount namespace is open at ``<procfs>/<pid>/root`` (proc(5)), so a
cycle finds the core Agent process (``agent run``), reads its identity, and proves every
capability inside that root with the Agent's uid, gid and groups. Following that link needs
ptrace read access to the Agent (fs/proc/base.c ``proc_pid_get_link`` ->
``ptrace_may_access(PTRACE_MODE_READ_FSCREDS)``): the same fsuid and fsgid, and no capability
the reader lacks. Where selfcheck's identity differs and it may change it (root), a helper
process holding exactly the Agent's credentials does the work (``selfcheck.asagent``).

Where no Agent is found (not started yet) or its root cannot be entered (another identity
selfcheck cannot take, more capabilities, another AppArmor or SELinux profile), the cycle
judges selfcheck's own mounts, and ``why`` says so on every surface.

Finding the Agent costs a scan of the host processes once; after that the PID found is
re-validated each cycle (still ``agent run``, same start time), so the steady state reads
two small files. In sidecar mode the scan reads only the processes of this pod's cgroups
when the cgroup tree shows them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from selfcheck import agentpod
from selfcheck.host import agent
from selfcheck.host.capabilities import parse_capability_sets
from selfcheck.host.files import describe, read_capped
from selfcheck.host.identity import Identity, read_identity
from selfcheck.host.procfs import parse_status, read_mountinfo
from selfcheck.host.root import OWN_BASE, Root

AGENT, OWN = "agent", "own"
VIEWS = (AGENT, OWN)
"""Closed set: whose view a verdict is (the ``view`` label)."""
OWN_PROC = Path("/proc")
CMDLINE_CAP = 4096
POD_SCAN_MAX = 4096
CAP_SETUID, CAP_SETGID = 7, 6


@dataclass(frozen=True, slots=True)
class Credentials:
    """What decides an ``open`` or ``connect``: effective uid, gid and supplementary groups."""

    uid: int
    gid: int
    groups: frozenset[int]

    @classmethod
    def own(cls) -> Credentials:
        return cls(os.geteuid(), os.getegid(), frozenset(os.getgroups()))

    @classmethod
    def of(cls, identity: Identity) -> Credentials | None:
        if identity.uid is None or identity.gid is None:
            return None
        return cls(identity.uid, identity.gid, frozenset(identity.groups))

    def words(self) -> str:
        """``uid 100, gid 101, groups 101,999`` (``none`` without supplementary groups)."""
        groups = ",".join(str(g) for g in sorted(self.groups)) or "none"
        return f"uid {self.uid}, gid {self.gid}, groups {groups}"


@dataclass(frozen=True, slots=True)
class Eyes:
    """One cycle's point of view: the root its paths resolve in, whose process it reads."""

    view: str
    root: Root
    proc: Path
    """The procfs (selfcheck's own, or its ``/host/proc``) in which ``pid`` is numbered."""
    pid: str
    """``self``, or the core Agent process's PID in ``proc``."""
    why: str
    credentials: Credentials
    helper: bool = False
    """Accesses need a helper process holding ``credentials`` (selfcheck's own differ)."""
    agent_pid: int | None = None
    agent_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """The Agent's allow-listed ``DD_*`` settings (``agentpod.ENV_ALLOWLIST``), never others."""
    shares_loopback: bool = True
    """The Agent's network namespace is this process's: its 127.0.0.1 servers answer here."""
    agent_address: str | None = None
    """The Agent pod's own address, where its all-address servers (health) answer when its
    loopback is out of reach (node mode)."""
    discovery: agent.Discovery | None = None
    """The Agent's processes this cycle found (shared with ``agent_container``)."""
    blind: bool = False
    """Node mode with an Agent that cannot be entered or found: selfcheck's own mounts say
    nothing about it, so the checks that need its root are skipped with ``why``."""

    @property
    def audited(self) -> str:
        """The process whose identity and mount table the audit reads: the Agent's whenever it
        was found (``status`` and ``mountinfo`` need no ptrace access), else this one."""
        return str(self.agent_pid) if self.agent_pid is not None else self.pid

    @property
    def numeric_pid(self) -> int:
        return os.getpid() if self.pid == "self" else int(self.pid)

    def who(self) -> str:
        """``the Agent container (pid 4242) as uid 100, gid 101, groups 101``."""
        if self.view == AGENT:
            return f"the Agent container (pid {self.pid}), as {self.credentials.words()}"
        return f"selfcheck's own mounts, as {self.credentials.words()}"

    def to_json(self) -> dict[str, str | int | bool]:
        body: dict[str, str | int | bool] = {
            "view": self.view,
            "as": self.credentials.words(),
            "why": self.why,
            "helper": self.helper,
        }
        if self.agent_pid is not None:
            body["agent_pid"] = self.agent_pid
            body["shares_loopback"] = self.shares_loopback
        return body


def own_eyes(
    why: str,
    proc: Path = OWN_PROC,
    agent_pid: int | None = None,
    blind: bool = False,
    discovery: agent.Discovery | None = None,
) -> Eyes:
    """selfcheck's own view; ``agent_pid`` when the Agent was found in ``proc`` but cannot be
    entered (its identity and mount table can still be audited)."""
    return Eyes(
        OWN,
        Root(OWN_BASE),
        proc if agent_pid is not None else OWN_PROC,
        "self",
        why,
        Credentials.own(),
        agent_pid=agent_pid,
        blind=blind,
        discovery=discovery,
    )


def discovery_proc(host_proc: Path) -> Path:
    """Where the Agent's processes are numbered: the host procfs mount when this container
    has one, else its own ``/proc``, which shows the node's processes under hostPID (a
    sidecar needs no copy of the Agent's mounts)."""
    try:
        (host_proc / "self").stat()
    except OSError:
        return OWN_PROC
    return host_proc


def _cmdline(proc: Path, pid: int) -> list[str]:
    raw = read_capped(f"{proc}/{pid}/cmdline", CMDLINE_CAP)
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _start_time(proc: Path, pid: int) -> str:
    """Field 22 of ``stat``: tells a restarted process from the one seen before."""
    text = read_capped(f"{proc}/{pid}/stat", CMDLINE_CAP).decode("ascii", "replace")
    fields = text.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def _is_core(proc: Path, pid: int) -> bool:
    try:
        return agent.classify("", _cmdline(proc, pid)) == agentpod.CORE
    except OSError:
        return False


CgroupTop = Callable[[], "str | None"]
"""Where this container's own cgroup mounts show the node's hierarchy, asked only on a scan."""


def _pod_cgroup_pids(proc: Path, cgroup_top: str | None) -> list[int] | None:
    """The PIDs of this pod's containers, from the pod cgroup's children (sidecar mode).

    ``None`` when this process's pod cgroup is not visible in ``cgroup_top`` (no cgroup tree
    of the node mounted, a private cgroup namespace): then the whole procfs is scanned.
    """
    if cgroup_top is None:
        return None
    try:
        own = agent.own_cgroup_path(OWN_PROC)
    except OSError:
        return None
    if agent.pod_uid(own) is None:
        return None
    pod_dir = Path(cgroup_top) / str(Path(own).parent).lstrip("/")
    pids: list[int] = []
    try:
        children = [e.path for e in os.scandir(pod_dir) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return None
    for child in children:
        try:
            text = read_capped(f"{child}/cgroup.procs", 64 * 1024).decode("ascii", "replace")
        except OSError:
            continue
        pids += [int(p) for p in text.split() if p.isdigit()]
    return pids[:POD_SCAN_MAX]


class Finder:
    """Finds the Agent's processes once, then re-validates the core one each cycle.

    The scan is the expensive part (every host process's command line); the validation reads
    the core process's ``stat`` and ``cmdline``. A restarted Agent (another start time) or a
    reused PID is scanned for again.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._known: tuple[Path, agent.Discovery, str] | None = None
        self.scanned = 0

    def find(self, proc: Path, cgroup_top: CgroupTop = lambda: None) -> agent.Discovery | None:
        """The Agent's processes with a core one, or ``None`` when there is none."""
        known = self._known
        if known is not None and known[0] == proc:
            core = known[1].core()
            if core is not None and self._still(proc, core.pid, known[2]):
                self.scanned = 0
                return known[1]
        self._known = None
        found = self._scan(proc, cgroup_top)
        core = found.core() if found is not None else None
        if found is None or core is None:
            return None
        try:
            self._known = (proc, found, _start_time(proc, core.pid))
        except OSError:
            return None
        return found

    @staticmethod
    def _still(proc: Path, pid: int, started: str) -> bool:
        try:
            return _start_time(proc, pid) == started and _is_core(proc, pid)
        except OSError:
            return False

    def _scan(self, proc: Path, cgroup_top: CgroupTop) -> agent.Discovery | None:
        if self.mode == agentpod.SIDECAR:
            pids = _pod_cgroup_pids(proc, cgroup_top())
            if pids is not None:
                self.scanned = len(pids)
                return agent.discover(proc, self.mode, pids=pids)
        try:
            found = agent.discover(proc, self.mode)
        except OSError:
            return None
        self.scanned = found.scanned
        return found


def _can_take_credentials() -> bool:
    """``CAP_SETUID`` and ``CAP_SETGID`` in the effective set: a helper may become the Agent."""
    try:
        status = read_capped("/proc/self/status", 64 * 1024).decode("ascii", "replace")
    except OSError:
        return False
    effective = parse_capability_sets(parse_status(status)).effective
    return bool(effective >> CAP_SETUID & 1 and effective >> CAP_SETGID & 1)


def local_address(fib_trie: str) -> str | None:
    """The first non-loopback ``/32 host LOCAL`` address of a ``net/fib_trie`` (the pod's IP)."""
    last = ""
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("|--"):
            last = text[3:].strip()
        elif text.startswith("/32 host LOCAL") and last and not last.startswith("127."):
            return last
    return None


def _network(proc: Path, pid: int) -> tuple[bool, str | None]:
    """Whether the Agent's network namespace is this process's, and else the Agent's address."""
    try:
        theirs = (proc / str(pid) / "ns" / "net").stat().st_ino
        if theirs == (OWN_PROC / "self" / "ns" / "net").stat().st_ino:
            return True, None
        trie = read_capped(f"{proc}/{pid}/net/fib_trie", 1024 * 1024).decode("ascii", "replace")
    except OSError:
        return True, None
    return False, local_address(trie)


def _settings_inside(proc: Path, pid: int) -> Mapping[str, str] | str:
    """The Agent's allow-listed settings once its root, mount table and environ open; else
    why not. An environ that reads empty is a process still starting, not one without
    settings: that cycle is selfcheck's own, and the next one reads it again."""
    base = proc / str(pid) / "root"
    try:
        os.listdir(base)  # noqa: PTH208 - one entry point, errors are what matter
        read_mountinfo(proc, str(pid))
        environ = agent.read_environ(proc, pid)
    except OSError as error:
        return (
            f"cannot enter the Agent's root ({describe(error, base)}): another capability "
            "set, AppArmor or SELinux profile than the Agent's"
        )
    if environ.blank:
        return f"the Agent's {proc}/{pid}/environ {agent.BLANK_ENVIRON}"
    return environ.values


def enter(proc: Path, pid: int) -> Eyes | str:
    """The Agent's eyes when its root opens for this process; else why not (one sentence)."""
    base = proc / str(pid) / "root"
    try:
        identity = read_identity(proc, pid)
    except OSError as error:
        return f"cannot read the Agent's identity: {describe(error)}"
    theirs = Credentials.of(identity)
    if theirs is None:
        return f"{proc}/{pid}/status names no uid or gid"
    mine = Credentials.own()
    if theirs != mine:
        if _can_take_credentials():
            return Eyes(
                AGENT,
                Root(base),
                proc,
                str(pid),
                f"the Agent runs as {theirs.words()}: a helper holding exactly those credentials "
                "does every access",
                theirs,
                helper=True,
                agent_pid=pid,
            )
        return (
            f"the Agent runs as {theirs.words()} and selfcheck as {mine.words()} without "
            "CAP_SETUID/CAP_SETGID to take the Agent's identity"
        )
    shares, address = _network(proc, pid)
    env = _settings_inside(proc, pid)
    if isinstance(env, str):
        return env
    return Eyes(
        AGENT,
        Root(base),
        proc,
        str(pid),
        "the Agent container's own root and identity",
        theirs,
        agent_pid=pid,
        agent_env=MappingProxyType(dict(env)),
        shares_loopback=shares,
        agent_address=address,
    )


def look(finder: Finder, host_proc: Path, cgroup_top: CgroupTop, forced_own: bool) -> Eyes:
    """This cycle's eyes: the Agent's when it is found and can be entered, else selfcheck's."""
    if forced_own:
        return own_eyes("SELFCHECK_VIEW=own")
    proc = discovery_proc(host_proc)
    found = finder.find(proc, cgroup_top)
    core = found.core() if found is not None else None
    node = finder.mode == agentpod.NODE
    if core is None:
        scope = "on this node" if node else "in this pod"
        return own_eyes(f"no 'agent run' process found {scope} in {proc}", blind=node)
    entered = enter(proc, core.pid)
    if isinstance(entered, str):
        return own_eyes(entered, proc, core.pid, blind=node, discovery=found)
    return replace(entered, discovery=found)
