"""Which ``agent run`` is the Agent to judge, among every one the kernel shows.

Node mode sees every process of the node (hostPID), and more than one of them may run
``agent run``: a Cluster Checks Runner (the Operator and the chart run it as ``bash -c "...
exec agent run"`` with ``DD_CLC_RUNNER_ENABLED=true``, a read-only root, no hostPID and no
host volume: DataDog/datadog-operator internal/controller/datadogagent/component/
clusterchecksrunner, DataDog/helm-charts charts/datadog/templates/
agent-clusterchecks-deployment.yaml), a second installation's node Agent, the old and the new
pod of a rolling update. A sidecar must take the ``agent run`` of its own pod, found by the pod
cgroup or, where the cgroups name no pod, by the network namespace every container of a pod
shares.

Two layers, kept apart (docs/node-mode.md, "Which Agent is judged", states the rule):
``read_candidate`` reads what the kernel shows of one candidate (its allow-listed environment,
mount table, PID namespace, network namespace, start time) with the ``host/`` readers;
``choose_node`` and ``choose_sidecar`` are pure over those facts, so their tests feed fixed
facts. ``picker`` joins them for ``agent.discover``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from selfcheck.agentpod import CORE, DEFAULT_DOGSTATSD_SOCKET, NODE, VOLUMES
from selfcheck.config import agent_bool
from selfcheck.host import agent
from selfcheck.host.cgroup import is_runtime_path
from selfcheck.host.files import read_capped
from selfcheck.host.namespaces import INITIAL_CGROUP_NS_INODE, namespace_inode, read_pid_view
from selfcheck.host.procfs import Mount, read_mountinfo, read_start_time
from selfcheck.host.sharing import placement

RUNNER_SETTING = "DD_CLC_RUNNER_ENABLED"
ROLLOUT_SECONDS = 600
"""Longest overlap of a rolling update's old and new pod on one node: the new pod becomes
Ready, then the old one ends within its termination grace period (30 s by default). Two pods
of one install still running together after this are two node Agents."""
HOST_PROC, HOST_CGROUP = "/host/proc", "/host/sys/fs/cgroup"
OWN_PROC = Path("/proc")
CGROUP_TYPES = ("cgroup", "cgroup2")


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the kernel shows of one ``agent run`` process; ``None`` where it could not be read."""

    process: agent.AgentProcess
    start: int
    """Start time in clock ticks after boot (``stat`` field 22); 0 when unreadable."""
    runner: bool | None
    """Its environment sets ``DD_CLC_RUNNER_ENABLED`` true; ``None``: environ unreadable."""
    host_pid: bool | None
    """Its PID namespace is the node's (one ``NSpid`` entry in the node's procfs)."""
    host_proc: bool | None
    host_cgroup: bool | None
    shared_socket: bool | None
    """Its DogStatsD socket directory is a bind of a node directory (``host.sharing``)."""
    net_ns: int | None = None
    install: tuple[str, ...] = ()
    """What two pods of one install share: the node paths behind the chart's volumes. Settings
    are left out: a rolling update most often changes them."""

    @property
    def pod(self) -> str:
        return self.process.pod_uid or f"cgroup {self.process.cgroup_path}"

    def evidence(self) -> tuple[str, ...]:
        """The node access it holds, in words: what only a node Agent's pod is given."""
        held = (
            ("hostPID", self.host_pid),
            (f"procfs at {HOST_PROC}", self.host_proc),
            (f"cgroups at {HOST_CGROUP}", self.host_cgroup),
            ("the node's socket directory", self.shared_socket),
        )
        return tuple(name for name, value in held if value)

    def name(self) -> str:
        return self.process.named()


@dataclass(frozen=True, slots=True)
class Choice:
    """The candidate chosen (``None``: no Agent to judge), why, and the other node Agents.
    ``why`` is empty when nothing was chosen for the plain reason that no candidate was there."""

    chosen: Candidate | None
    why: str
    rivals: tuple[Candidate, ...] = ()


# --- the rule, pure over facts ---------------------------------------------------------------


def _order(candidate: Candidate) -> tuple[int, int, int]:
    """Most node access first, then the newest start, then the highest PID (deterministic)."""
    return (-len(candidate.evidence()), -candidate.start, -candidate.process.pid)


def _successor(newer: Candidate, older: Candidate, now: int, hertz: int) -> bool:
    """``newer`` and ``older`` are the new and the ending pod of one rolling update: two pods of
    the same install, ``newer`` started later and young enough for the overlap to last."""
    return (
        older.pod != newer.pod
        and older.install == newer.install
        and older.start <= newer.start
        and now - newer.start <= ROLLOUT_SECONDS * hertz
    )


def _newest_successor(
    chosen: Candidate, agents: Sequence[Candidate], now: int, hertz: int
) -> Candidate:
    """A rolling update's new pod is judged even where it holds less node access than the
    ending one (its fault is the one that stays)."""
    newer = [c for c in agents if _successor(c, chosen, now, hertz)]
    return max(newer, key=lambda c: (c.start, c.process.pid)) if newer else chosen


def choose_node(candidates: Sequence[Candidate], now: int, hertz: int = 100) -> Choice:
    """The node Agent among every ``agent run`` of the node (docs/node-mode.md):

    1. a candidate whose environment sets ``DD_CLC_RUNNER_ENABLED`` true is a Cluster Checks
       Runner and is passed over;
    2. of the others, those holding node access (hostPID, procfs at /host/proc, cgroups at
       /host/sys/fs/cgroup, the node's socket directory) are node Agents; when none holds any,
       every one left is (a node Agent that lost all its host access is still judged);
    3. the one with most node access, then the newest, is chosen, unless a newer pod of its
       install started less than ``ROLLOUT_SECONDS`` ago: a rolling update's new pod is chosen;
    4. every other node Agent pod is a rival (two node Agents on the node), except the older
       pods of the chosen one's rolling update (same install, ``ROLLOUT_SECONDS``).
    """
    runners = [c for c in candidates if c.runner]
    rest = [c for c in candidates if not c.runner]
    if not rest:
        if not runners:
            return Choice(None, "")
        return Choice(None, "no node Agent on this node: " + _runners(runners))
    holding = [c for c in rest if c.evidence()]
    agents = sorted(holding or rest, key=_order)
    chosen = _newest_successor(agents[0], agents, now, hertz)
    others = [c for c in agents if c.pod != chosen.pod]
    rolling = [c for c in others if _successor(chosen, c, now, hertz)]
    rivals = tuple(c for c in others if c not in rolling)
    access = ", ".join(chosen.evidence()) or "no node access (none of the candidates has any)"
    why = [f"{chosen.name()}: the node Agent ({access})"]
    if rolling:
        why.append(
            "the older pod of its rolling update, "
            + ", ".join(c.name() for c in rolling)
            + ", is ending"
        )
    if rivals:
        why.append("another node Agent runs beside it: " + ", ".join(c.name() for c in rivals))
    if runners:
        why.append(_runners(runners))
    passed = [c for c in rest if not c.evidence() and holding]
    if passed:
        why.append("passed over for holding no node access: " + ", ".join(c.name() for c in passed))
    return Choice(chosen, "; ".join(why), rivals)


def _runners(runners: Sequence[Candidate]) -> str:
    named = ", ".join(c.name() for c in runners)
    return (
        f"{named} {'is a' if len(runners) == 1 else 'are'} Cluster Checks Runner"
        + ("" if len(runners) == 1 else "s")
        + f" ({RUNNER_SETTING})"
    )


def choose_sidecar(candidates: Sequence[Candidate], own_path: str, own_net: int | None) -> Choice:
    """The ``agent run`` of selfcheck's own pod: by the pod cgroup (``agent.same_pod``); where
    selfcheck's cgroup names no pod, by the network namespace a pod's containers share, when
    the candidates in it are one container's (several: a host network, which proves nothing)."""
    by_cgroup = [c for c in candidates if agent.same_pod(own_path, c.process.cgroup_path)]
    if by_cgroup:
        chosen = max(by_cgroup, key=lambda c: (c.start, c.process.pid))
        return Choice(chosen, f"{chosen.name()}: the 'agent run' of this pod (its pod cgroup)")
    if agent.pod_uid(own_path) is not None:
        return Choice(None, "")
    if own_net is None:
        return Choice(None, "")
    sharing = [c for c in candidates if c.net_ns == own_net]
    containers = {c.process.cgroup_path for c in sharing}
    if len(containers) == 1:
        chosen = max(sharing, key=lambda c: (c.start, c.process.pid))
        return Choice(
            chosen,
            f"{chosen.name()}: the 'agent run' in this pod's network namespace (net:[{own_net}]);"
            " the cgroups name no pod",
        )
    if containers:
        return Choice(
            None,
            f"{len(containers)} containers run 'agent run' in this network namespace (a host "
            "network): none is this pod's by evidence",
        )
    return Choice(None, "")


# --- the facts, read ------------------------------------------------------------------------


def read_start(proc: Path, pid: int) -> int:
    """``stat`` field 22 as a number (``procfs.read_start_time``); 0 when unreadable or gone."""
    try:
        return int(read_start_time(proc, pid) or 0)
    except OSError:
        return 0


def now_ticks(proc: Path) -> tuple[int, int]:
    """Clock ticks since boot (``uptime``) and ticks per second, to age a start time."""
    hertz = os.sysconf("SC_CLK_TCK")
    try:
        uptime = float(read_capped(f"{proc}/uptime", 256).split()[0])
    except (OSError, ValueError, IndexError):
        return 0, hertz
    return int(uptime * hertz), hertz


def _mounted(mounts: Sequence[Mount], point: str, types: tuple[str, ...]) -> bool:
    """A mount of one of ``types`` at ``point`` or below it."""
    below = point.rstrip("/") + "/"
    return any(
        m.fstype in types and (m.mount_point == point or m.mount_point.startswith(below))
        for m in mounts
    )


def _socket_shared(mounts: list[Mount], env: Mapping[str, str]) -> bool | None:
    path = env.get("DD_DOGSTATSD_SOCKET") or DEFAULT_DOGSTATSD_SOCKET
    spellings = [path]
    if path.startswith("/var/run/"):  # a link to /run in most images: mountinfo shows /run
        spellings.append("/run/" + path.removeprefix("/var/run/"))
    found = [p for p in (placement(s, mounts) for s in spellings) if p is not None]
    if not found:
        return None
    return max(found, key=lambda p: len(p.mount_point)).shared


def _install(mounts: Sequence[Mount]) -> tuple[str, ...]:
    """The node paths behind the chart's volumes: ``mount point<-root`` (mountinfo's root of a
    bind is the path in the node's file system)."""
    points = {v.mount_path for v in VOLUMES}
    return tuple(sorted(f"{m.mount_point}<-{m.root}" for m in mounts if m.mount_point in points))


def read_candidate(proc: Path, process: agent.AgentProcess) -> Candidate:
    """The facts of one candidate; what cannot be read (another identity) stays ``None``."""
    pid = process.pid
    env: Mapping[str, str] | None
    try:
        env = agent.read_environ(proc, pid).values
    except OSError:
        env = None
    try:
        mounts: list[Mount] | None = read_mountinfo(proc, str(pid))
    except OSError:
        mounts = None
    try:
        host_pid: bool | None = read_pid_view(proc, pid).levels == 1
    except OSError:
        host_pid = None
    known = env or {}
    host_proc = known.get("HOST_PROC") or HOST_PROC
    cgroup_root = known.get("DD_CONTAINER_CGROUP_ROOT") or HOST_CGROUP
    return Candidate(
        process,
        read_start(proc, pid),
        None if env is None else agent_bool(env.get(RUNNER_SETTING, "")) is True,
        host_pid,
        None if mounts is None else _mounted(mounts, host_proc, ("proc",)),
        None if mounts is None else _mounted(mounts, cgroup_root, CGROUP_TYPES),
        None if mounts is None else _socket_shared(mounts, known),
        _net(proc, pid),
        _install(mounts or []),
    )


# --- joined, for agent.discover -----------------------------------------------------------------


def _discovery(
    placed: Sequence[agent.AgentProcess],
    choice: Choice,
    scanned: int,
    complete: bool,
    member: Callable[[agent.AgentProcess], bool],
) -> agent.Discovery:
    """The chosen candidate first, then the other Agent processes of its pod (``member``)."""
    pods = {p.pod_uid for p in placed if p.role == CORE and p.pod_uid}
    chosen = choice.chosen
    if chosen is None:
        return agent.Discovery((), scanned, complete, len(pods), choice.why)
    mine = chosen.process
    processes = (mine, *(p for p in placed if p.pid != mine.pid and member(p)))
    rivals = tuple(c.process for c in choice.rivals)
    return agent.Discovery(
        processes, scanned, complete, len(pods - {mine.pod_uid}), choice.why, rivals
    )


def _net(proc: Path, pid: int | str) -> int | None:
    return _ns(proc, pid, "net")


def pick_node(
    proc: Path, placed: Sequence[agent.AgentProcess], scanned: int, complete: bool
) -> agent.Discovery:
    """Node mode: every ``agent run`` in a pod cgroup is a candidate (``choose_node``); the
    chosen pod's other Agent processes come with it."""
    cores = [p for p in placed if p.role == CORE and p.pod_uid]
    now, hertz = now_ticks(proc)
    choice = choose_node([read_candidate(proc, p) for p in cores], now, hertz)
    pod = choice.chosen.process.pod_uid if choice.chosen is not None else None
    return _discovery(placed, choice, scanned, complete, lambda p: p.pod_uid == pod)


def pick_sidecar(own_path: str | None = None) -> agent.Pick:
    """Sidecar mode: ``choose_sidecar`` with this process's own cgroup and network namespace;
    the pod's other Agent processes are found the way the core one was."""

    def pick(
        proc: Path, placed: Sequence[agent.AgentProcess], scanned: int, complete: bool
    ) -> agent.Discovery:
        mine = own_path if own_path is not None else _own_path()
        own_net = _net(OWN_PROC, "self") if _net_may_name_a_pod(proc, mine) else None
        cores = [p for p in placed if p.role == CORE]
        facts = [
            Candidate(p, read_start(proc, p.pid), None, None, None, None, None, _net(proc, p.pid))
            for p in cores
        ]
        choice = choose_sidecar(facts, mine, own_net)
        chosen = choice.chosen
        if chosen is not None and not agent.same_pod(mine, chosen.process.cgroup_path):
            return _discovery(
                placed, choice, scanned, complete, lambda p: _net(proc, p.pid) == own_net
            )
        return _discovery(
            placed, choice, scanned, complete, lambda p: agent.same_pod(mine, p.cgroup_path)
        )

    return pick


def _own_path() -> str:
    try:
        return agent.own_cgroup_path()
    except OSError:
        return "/"


def _net_may_name_a_pod(proc: Path, own_path: str) -> bool:
    """Whether this process's network namespace may stand for its pod: it runs in a container
    (its cgroup is a runtime's, or it has a cgroup namespace of its own: a process of the
    machine itself has no pod) and the namespace is not the one of the node's PID 1 (a host
    network, shared by every hostNetwork pod). PID 1's namespace cannot be read from a
    container with fewer capabilities than PID 1; then ``choose_sidecar``'s rule (one
    container in it) decides alone."""
    private_cgroupns = _ns(OWN_PROC, "self", "cgroup") not in (None, INITIAL_CGROUP_NS_INODE)
    if not (is_runtime_path(own_path) or private_cgroupns):
        return False
    theirs = _net(proc, 1)
    return theirs is None or theirs != _net(OWN_PROC, "self")


def _ns(proc: Path, pid: int | str, kind: str) -> int | None:
    try:
        return namespace_inode(kind, proc, pid)
    except OSError:
        return None


def picker(mode: str) -> agent.Pick:
    """The rule for ``mode``, as ``agent.discover`` takes it."""
    return pick_node if mode == NODE else pick_sidecar()
