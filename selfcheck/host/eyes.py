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
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from selfcheck import agentpod
from selfcheck.host import agent, nodeagent
from selfcheck.host.capabilities import cap_bit, decode
from selfcheck.host.files import describe, read_capped
from selfcheck.host.identity import Identity, read_identity
from selfcheck.host.procfs import read_mountinfo, read_start_time
from selfcheck.host.root import OWN_BASE, Root, pinned

AGENT, OWN = "agent", "own"
VIEWS = (AGENT, OWN)
"""Closed set: whose view a verdict is (the ``view`` label)."""
OWN_PROC = Path("/proc")
CMDLINE_CAP = 4096
POD_SCAN_MAX = 4096
NODE_RESCAN_CYCLES = 10
"""Node mode scans the node again after this many cycles on one Agent: a second install or a
rolling update's new pod appears while the chosen Agent lives on."""
CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_SYS_PTRACE = 7, 6, 8, 19
ACCESS_CAPS = frozenset(
    cap_bit(name)
    for name in (
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_SYS_PTRACE",
        "CAP_SYS_ADMIN",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
    )
)
"""Capabilities that change whether an open, a listing, a connect or a procfs read of another
process succeeds (capabilities(7), fs/namei.c ``generic_permission``, ptrace(2)
"Ptrace access mode checking"): one of these held by the Agent and not by the eyes can turn a
denial into a success."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What decides an ``open`` or ``connect``: effective uid, gid, supplementary groups, and
    the capability sets (``effective`` acts; ``permitted`` bounds what the process may raise and
    what a ptrace read of it needs; ``bounding`` limits what an ``execve`` may gain)."""

    uid: int
    gid: int
    groups: frozenset[int]
    effective: int = 0
    permitted: int = 0
    bounding: int = 0

    @classmethod
    def own(cls) -> Credentials:
        """This process's, its capability sets from its own ``status`` (the same reader as
        the audit's, ``selfcheck.host.capabilities``)."""
        groups = frozenset(os.getgroups())
        try:
            caps = read_identity(OWN_PROC).capabilities
        except OSError:
            return cls(os.geteuid(), os.getegid(), groups)
        return cls(
            os.geteuid(), os.getegid(), groups, caps.effective, caps.permitted, caps.bounding
        )

    @classmethod
    def of(cls, identity: Identity) -> Credentials | None:
        """The Agent's, or ``None`` when its ``status`` lacks a uid, gid or capability set."""
        caps = identity.capabilities
        if identity.uid is None or identity.gid is None or set(caps.garbled) & _NEEDED_SETS:
            return None
        return cls(
            identity.uid,
            identity.gid,
            frozenset(identity.groups),
            caps.effective,
            caps.permitted,
            caps.bounding,
        )

    def capped(self, held: int) -> Credentials:
        """These credentials with no capability outside ``held`` (what selfcheck can give)."""
        return replace(self, effective=self.effective & held, permitted=self.permitted & held)

    def words(self) -> str:
        """``uid 100, gid 101, groups 101,999`` (``none`` without supplementary groups)."""
        groups = ",".join(str(g) for g in sorted(self.groups)) or "none"
        return f"uid {self.uid}, gid {self.gid}, groups {groups}"

    def capability_words(self) -> str:
        """``CAP_CHOWN, CAP_KILL`` (``no capabilities``): the effective set, which acts."""
        return ", ".join(decode(self.effective)) or "no capabilities"

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "gid": self.gid,
            "groups": sorted(self.groups),
            "effective": self.effective,
            "permitted": self.permitted,
            "bounding": self.bounding,
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Credentials:
        """The inverse of ``to_json``; raises ``ValueError``/``KeyError``/``TypeError`` on
        anything that is not exactly that shape (an int, never a bool or a string)."""
        values = {name: body[name] for name in _INT_FIELDS}
        groups = body["groups"]
        if not isinstance(groups, list) or not all(_is_int(v) for v in [*values.values(), *groups]):
            raise ValueError("credentials hold integers only")
        return cls(groups=frozenset(groups), **values)


_NEEDED_SETS = frozenset({"CapEff", "CapPrm", "CapBnd"})
_INT_FIELDS = ("uid", "gid", "effective", "permitted", "bounding")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True, slots=True)
class Pin:
    """The one Agent process a cycle judges: its PID and start time (field 22 of ``stat``).

    A restarted Agent, or its PID reused, has another start time: ``still`` then says the
    cycle's accesses may have met two processes, and the runner discards the cycle."""

    proc: Path
    pid: int
    started: str

    def still(self) -> bool:
        try:
            return bool(self.started) and start_time(self.proc, self.pid) == self.started
        except OSError:
            return False


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
    shares_loopback: bool | None = True
    """The Agent's network namespace is this process's: its 127.0.0.1 servers answer here.
    ``None`` when that could not be told (then nothing is read on either loopback)."""
    agent_address: str | None = None
    """The Agent pod's own address, where its all-address servers (health) answer when its
    loopback is out of reach (node mode)."""
    discovery: agent.Discovery | None = None
    """The Agent's processes this cycle found (shared with ``agent_container``)."""
    blind: bool = False
    """Node mode with an Agent that cannot be entered or found: selfcheck's own mounts say
    nothing about it, so the checks that need its root are skipped with ``why``."""
    pin: Pin | None = None
    """The Agent process this cycle is pinned to (``None`` in selfcheck's own view)."""
    missing: int = 0
    """Capabilities the Agent holds that these eyes lack (selfcheck never held them)."""

    @property
    def audited(self) -> str:
        """The process whose identity and mount table the audit reads: the Agent's whenever it
        was found (``status`` and ``mountinfo`` need no ptrace access), else this one."""
        return str(self.agent_pid) if self.agent_pid is not None else self.pid

    @property
    def numeric_pid(self) -> int:
        return os.getpid() if self.pid == "self" else int(self.pid)

    @property
    def missing_access(self) -> int:
        """The missing capabilities that could turn a denial into a success."""
        return sum(1 << bit for bit in ACCESS_CAPS if self.missing >> bit & 1)

    def still(self) -> bool:
        """The pinned Agent is the one the cycle started with (always, without a pin)."""
        return self.pin is None or self.pin.still()

    def loopback_unknown(self) -> str | None:
        """Why the Agent's 127.0.0.1 is not read here, or ``None`` when it is this process's."""
        if self.shares_loopback is True:
            return None
        if self.shares_loopback is None:
            return "whether the Agent's network namespace is this one could not be read"
        return "the Agent's 127.0.0.1 is in another network namespace"

    def who(self) -> str:
        """``the Agent container (pid 4242) as uid 100, gid 101, groups 101``."""
        if self.view == AGENT:
            return f"the Agent container (pid {self.pid}), as {self.credentials.words()}"
        return f"selfcheck's own mounts, as {self.credentials.words()}"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "view": self.view,
            "as": self.credentials.words(),
            "capabilities": self.credentials.capability_words(),
            "why": self.why,
            "helper": self.helper,
        }
        if self.missing:
            body["capabilities_missing"] = list(decode(self.missing))
        if self.agent_pid is not None:
            body["agent_pid"] = self.agent_pid
            body["shares_loopback"] = self.shares_loopback
        if self.discovery is not None and self.discovery.why:
            body["chosen"] = self.discovery.why
        if self.pin is not None:
            body["agent_started"] = self.pin.started
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
    return agent.read_cmdline(proc, pid)


def start_time(proc: Path, pid: int) -> str:
    """The process's start time (``procfs.read_start_time``); empty once it has exited."""
    return read_start_time(proc, pid)


def _is_core(proc: Path, pid: int) -> bool:
    try:
        return agent.classify("", _cmdline(proc, pid)) == agentpod.CORE
    except OSError:
        return False


def still_running(proc: Path, found: agent.Discovery, starts: Mapping[int, str]) -> bool:
    """Every process of ``found`` is the one its start time in ``starts`` says, and the core
    one is still ``agent run``: no PID the cycle hands on is stale."""
    core = found.core()
    if core is None or not _is_core(proc, core.pid):
        return False
    try:
        return all(start_time(proc, p.pid) == starts.get(p.pid) for p in found.processes)
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
    """Finds the Agent's processes once, then re-validates every one of them each cycle.

    The scan is the expensive part (every host process's command line); the validation reads
    each found process's ``stat`` (and the core one's ``cmdline``). A restarted process of any
    role (another start time), a reused PID or one gone is scanned for again, so no PID the
    cycle hands on (trace-agent's for the APM listener...) is a stale one.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._known: tuple[Path, agent.Discovery, dict[int, str]] | None = None
        self.scanned = 0
        self._reused = 0
        self.why = ""
        """The last scan's words on its choice (``nodeagent``): the own view's ``why`` names the
        runners passed over when no Agent was taken."""

    def find(self, proc: Path, cgroup_top: CgroupTop = lambda: None) -> agent.Discovery | None:
        """The Agent's processes with a core one, or ``None`` when there is none."""
        known = self._known
        rescan = self.mode == agentpod.NODE and self._reused >= NODE_RESCAN_CYCLES
        if (
            known is not None
            and known[0] == proc
            and not rescan
            and still_running(proc, *known[1:])
        ):
            self.scanned = 0
            self._reused += 1
            return known[1]
        self._reused = 0
        self._known = None
        found = self._scan(proc, cgroup_top)
        core = found.core() if found is not None else None
        self.why = found.why if found is not None else ""
        if found is None or core is None:
            return None
        try:
            starts = {p.pid: start_time(proc, p.pid) for p in found.processes}
        except OSError:
            return None
        self._known = (proc, found, starts)
        return found

    def started(self, pid: int) -> str | None:
        """The start time the last scan or validation read for ``pid``."""
        return self._known[2].get(pid) if self._known is not None else None

    def _scan(self, proc: Path, cgroup_top: CgroupTop) -> agent.Discovery | None:
        if self.mode == agentpod.SIDECAR:
            pids = _pod_cgroup_pids(proc, cgroup_top())
            if pids is not None:
                self.scanned = len(pids)
                return agent.discover(proc, self.mode, pids=pids, pick=nodeagent.picker(self.mode))
        try:
            found = agent.discover(proc, self.mode, pick=nodeagent.picker(self.mode))
        except OSError:
            return None
        self.scanned = found.scanned
        return found


def _cannot_become(mine: Credentials, target: Credentials) -> str | None:
    """Why a helper cannot take ``target`` from ``mine`` (``selfcheck.host.become``), else
    ``None``: other ids need ``CAP_SETUID``/``CAP_SETGID``, a smaller bounding set
    ``CAP_SETPCAP``; lowering the effective and permitted sets needs nothing."""
    ids = (target.uid, target.gid, target.groups) != (mine.uid, mine.gid, mine.groups)
    if ids and not (mine.effective >> CAP_SETUID & 1 and mine.effective >> CAP_SETGID & 1):
        return "without CAP_SETUID/CAP_SETGID to take the Agent's identity"
    if mine.bounding & ~target.bounding and not mine.effective >> CAP_SETPCAP & 1:
        return "without CAP_SETPCAP to drop from its bounding set what the Agent's lacks"
    return None


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


def network(proc: Path, pid: int) -> tuple[bool | None, str | None]:
    """Whether the Agent's network namespace is this process's (``None``: unknown), and else
    the Agent pod's address.

    Compared by the inode of ``<proc>/<pid>/net/dev``: every network namespace has its own
    ``/proc/net`` entries, each with an inode number of its own (fs/proc/proc_net.c,
    fs/proc/generic.c ``proc_alloc_inum``), and, unlike ``ns/net``, reading them needs no
    ptrace access, so the parent of a helper (another uid) reads it too."""
    try:
        theirs = (proc / str(pid) / "net" / "dev").stat().st_ino
        if theirs == (OWN_PROC / "self" / "net" / "dev").stat().st_ino:
            return True, None
    except OSError:
        return None, None
    try:
        trie = read_capped(f"{proc}/{pid}/net/fib_trie", 1024 * 1024).decode("ascii", "replace")
    except OSError:
        return False, None
    return False, local_address(trie)


KEPT_ROOTS = 4
_KEPT: dict[Pin, Root] = {}
_KEPT_LOCK = threading.Lock()


def _pinned_root(pin: Pin) -> Root:
    """The Agent's root opened once per Agent process (PID and start time), not once per
    cycle: the same descriptor gives every cycle the same paths, so what is kept between
    cycles by path (the cgroup tree, ``selfcheck.host.view.TreeCache``) is found again. Only
    the last few live Agents' are kept; raises ``OSError`` when the kernel refuses the root."""
    with _KEPT_LOCK:
        kept = _KEPT.get(pin)
        if kept is not None:
            return kept
        root = pinned(pin.proc / str(pin.pid) / "root")
        for gone in [kept for kept in _KEPT if not kept.still()]:
            del _KEPT[gone]  # a container gone: its root is not held open by selfcheck
        while len(_KEPT) >= KEPT_ROOTS:
            del _KEPT[next(iter(_KEPT))]
        _KEPT[pin] = root
        return root


def _missing_words(missing: int) -> str:
    return f"the Agent holds {', '.join(decode(missing))}, which selfcheck lacks"


def enter(proc: Path, pid: int, started: str | None = None) -> Eyes | str:
    """The Agent's eyes when its root opens for this process; else why not (one sentence).

    The eyes hold the Agent's uid, gid, groups and capability sets (as far as selfcheck holds
    them: ``missing`` names the rest), its start time (``started`` when the caller already
    read it, else now), and, when this process may follow its root, that root opened once.
    """
    try:
        identity = read_identity(proc, pid)
        began = started if started is not None else start_time(proc, pid)
    except OSError as error:
        return f"cannot read the Agent's identity: {describe(error)}"
    theirs = Credentials.of(identity)
    if theirs is None:
        return f"{proc}/{pid}/status names no uid, gid or capability sets"
    mine = Credentials.own()
    target = _target(theirs, mine)
    missing = (theirs.effective | theirs.permitted) & ~mine.permitted
    pin = Pin(proc, pid, began)
    shares, address = network(proc, pid)
    if target != mine:
        return _through_helper(pin, theirs, mine, (shares, address), missing)
    base = proc / str(pid) / "root"
    try:
        root = _pinned_root(pin)
        read_mountinfo(proc, str(pid))
        environ = agent.read_environ(proc, pid)
    except OSError as error:
        why = f"{_missing_words(missing)}: " if missing else ""
        return (
            f"cannot enter the Agent's root ({describe(error, base)}): {why}another capability "
            "set, AppArmor or SELinux profile than the Agent's"
        )
    if environ.blank:  # a process still starting, not one without settings: read it next cycle
        return f"the Agent's {proc}/{pid}/environ {agent.BLANK_ENVIRON}"
    env = environ.values
    why = "the Agent container's own root and identity"
    if missing:
        why += f", but {_missing_words(missing)}: a denial its capabilities would lift is marked"
    return Eyes(
        AGENT,
        root,
        proc,
        str(pid),
        why,
        target,
        agent_pid=pid,
        agent_env=MappingProxyType(dict(env)),
        shares_loopback=shares,
        agent_address=address,
        pin=pin,
        missing=missing,
    )


def _target(theirs: Credentials, mine: Credentials) -> Credentials:
    """The Agent's credentials with only the capabilities selfcheck can give a helper."""
    return replace(theirs.capped(mine.permitted), bounding=theirs.bounding & mine.bounding)


def _through_helper(
    pin: Pin,
    theirs: Credentials,
    mine: Credentials,
    network: tuple[bool | None, str | None],
    missing: int,
) -> Eyes | str:
    """Eyes whose accesses a helper makes holding the Agent's credentials, or why none can."""
    target = _target(theirs, mine)
    refused = _cannot_become(mine, target)
    if refused is not None:
        return f"the Agent runs as {theirs.words()} and selfcheck as {mine.words()} {refused}"
    if missing and target.effective >> CAP_SYS_PTRACE & 1 == 0:
        return (
            f"{_missing_words(missing)}: the kernel refuses its root to a reader without them "
            "(ptrace read check), and no helper can gain a capability selfcheck lacks"
        )
    same = " (selfcheck's too)" if target.words() == mine.words() else ""
    why = (
        f"the Agent runs as {theirs.words()}{same} with {target.capability_words()}: a helper "
        "holding exactly those credentials and capabilities does every access"
    )
    if missing:
        why += f", but {_missing_words(missing)}: a denial its capabilities would lift is marked"
    return Eyes(
        AGENT,
        Root(pin.proc / str(pin.pid) / "root"),
        pin.proc,
        str(pin.pid),
        why,
        target,
        helper=True,
        agent_pid=pin.pid,
        shares_loopback=network[0],
        agent_address=network[1],
        pin=pin,
        missing=missing,
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
        why = f"no 'agent run' process found {scope} in {proc}"
        return own_eyes(f"{why}: {finder.why}" if finder.why else why, blind=node)
    entered = enter(proc, core.pid, finder.started(core.pid))
    if isinstance(entered, str):
        return own_eyes(entered, proc, core.pid, blind=node, discovery=found)
    return replace(entered, discovery=found)
