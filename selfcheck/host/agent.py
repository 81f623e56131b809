"""The Datadog Agent's own processes, read from the host procfs (hostPID).

With ``/host/proc`` being the node's procfs, the Agent's processes are visible beside the
sidecar's, so what the Agent container really holds (identity, capability sets, seccomp,
no-new-privs, mount table, configuration, sockets) is read from the kernel instead of being
trusted to the sidecar's copy of its spec.

Discovery lists the numeric entries of the host procfs and reads each one's ``cmdline``
itself, through the capped reader (``selfcheck.host.files.read_capped``): those are the only
two facts it needs, bounded in processes (``MAX_PIDS``), bytes (``CMDLINE_CAP``) and time.
Read directly, they need no lock and hold nothing between cycles, where ``psutil`` could only
be pointed at another procfs through one module-level ``PROCFS_PATH`` for the whole
interpreter, and cost the serving process 0.8 MB (``bench/results/footprint-floor.md``).

**Secrets.** The Agent's environment holds ``DD_API_KEY`` and friends. A general reader
such as ``psutil``'s ``Process.environ()`` decodes *every* variable into a dict, so a key would
live in this process's memory (and in any traceback's locals) for as long as that dict does.
``read_environ`` reads ``/host/proc/<pid>/environ`` into one capped ``bytearray``, copies out
only the values whose names are on ``ENV_ALLOWLIST``, and overwrites the buffer before
returning. Names not on the list are compared as bytes and never decoded; no exception raised
here carries file content (``OSError`` names the path and errno only).
"""

from __future__ import annotations

import enum
import os
import posixpath
import re
import socket
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from selfcheck.agentpod import CORE, ENV_ALLOWLIST, NODE, ROLES, SIDECAR, TRACE
from selfcheck.host.cgroup import (
    CgroupLine,
    container_id_from_path,
    parse_proc_cgroup,
    read_proc_cgroup,
)
from selfcheck.host.files import describe, read_capped, read_text
from selfcheck.host.identity import Identity, read_identity
from selfcheck.host.procfs import Mount, list_pids, read_mountinfo

_ALLOWED_BYTES = frozenset(name.encode() for name in ENV_ALLOWLIST)

ENVIRON_CAP = 256 * 1024
MAX_PIDS = 20_000
CMDLINE_CAP = 4096
"""Enough for the first eight arguments ``classify`` reads; a longer command line is cut."""
MAX_FDS = 4_096
NET_UNIX_CAP = 4 * 1024 * 1024
DISCOVERY_SECONDS = 0.5
CONNECT_TIMEOUT = 0.5


# The kubelet's pod cgroup: cgroupfs ``pod<uid>``, systemd ``kubepods-<qos>-pod<uid_>.slice``
# (the UID's dashes become underscores there).
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD_RE = re.compile(rf"(?:^|-)pod({_UID})(?:\.slice)?$")

T = TypeVar("T")


# --- recognising the Agent --------------------------------------------------------------------


def classify(name: str, cmdline: Sequence[str]) -> str | None:
    """The Agent role of a process from its executable name and command line, else ``None``.

    The chart runs ``agent run``, ``trace-agent`` (Agent 7.75+: ``trace-loader <config>
    trace-agent ...``), ``process-agent`` and ``system-probe``. A title rewritten into one
    argument (``"agent run"``) is split; an empty command line (a zombie) falls back to the
    executable name, which cannot tell ``agent run`` from ``agent status`` and so only
    recognises the other roles.
    """
    argv = list(cmdline[:8])
    if len(argv) == 1 and " " in argv[0]:
        argv = argv[0].split()[:8]
    base = posixpath.basename(argv[0]) if argv else name
    args = argv[1:]
    if base in ("agent", "datadog-agent"):
        return CORE if "run" in args[:3] else None
    if base == "trace-loader":
        return TRACE if any(posixpath.basename(a) == TRACE for a in args[:4]) else None
    if base in ROLES[1:]:
        return base
    return None


def pod_uid(path: str) -> str | None:
    """The pod UID in a kubelet cgroup path (cgroupfs or systemd form), dashed; else ``None``."""
    for element in reversed(path.split("/")):
        match = _POD_RE.search(element)
        if match:
            return match.group(1).replace("_", "-")
    return None


def pod_cgroup_path(lines: list[CgroupLine]) -> str | None:
    """The path that places a process in a pod: the ``memory`` line (v1), else the v2 line."""
    by_field = {line.controller_field: line.path for line in lines}
    return by_field.get("memory", by_field.get("", lines[0].path if lines else None))


def same_pod(own_path: str, other_path: str) -> bool:
    """Whether two cgroup paths, read by this process, are containers of one pod.

    With both pod UIDs visible they decide. In a private cgroup namespace this process's own
    path reads ``/`` and the others' are relative to it: ``/../<container>`` (one level up, then
    down) is a sibling under this container's parent, which the kubelet makes the pod cgroup.
    """
    own_uid, other_uid = pod_uid(own_path), pod_uid(other_path)
    if own_uid and other_uid:
        return own_uid == other_uid
    parts = [p for p in other_path.split("/") if p]
    ups = len(parts) - len(list(_drop_ups(parts)))
    return own_uid is None and ups == 1 and len(parts) > 1


def _drop_ups(parts: list[str]) -> Iterator[str]:
    it = iter(parts)
    for part in it:
        if part != "..":
            yield part
            yield from it
            return


@dataclass(frozen=True, slots=True)
class AgentProcess:
    pid: int
    role: str
    cgroup_path: str
    pod_uid: str | None
    container_id: str | None

    def named(self) -> str:
        """``pod <uid> container <id12> (pid N)``: the pod and container, never a secret."""
        parts = [f"pod {self.pod_uid}" if self.pod_uid else "no pod cgroup"]
        if self.container_id:
            parts.append(f"container {self.container_id[:12]}")
        return " ".join(parts) + f" (pid {self.pid})"

    def to_json(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "role": self.role,
            "pod_uid": self.pod_uid,
            "container_id": self.container_id[:12] if self.container_id else None,
        }


@dataclass(frozen=True, slots=True)
class Discovery:
    """What one scan found: the Agent processes of the pod chosen, and how far the scan went."""

    processes: tuple[AgentProcess, ...]
    scanned: int
    complete: bool
    other_pods: int = 0
    why: str = ""
    """Which ``agent run`` was taken and why, in words (``host.nodeagent``; empty without it)."""
    rivals: tuple[AgentProcess, ...] = ()
    """Node mode: the core process of every other node Agent pod (a second installation)."""

    def core(self) -> AgentProcess | None:
        return next((p for p in self.processes if p.role == CORE), None)

    def of_role(self, *roles: str) -> tuple[AgentProcess, ...]:
        return tuple(p for p in self.processes if p.role in roles)


def read_cmdline(host_proc: Path, pid: int, cap: int = CMDLINE_CAP) -> list[str]:
    """The arguments of ``pid`` (at most ``cap`` bytes of them, the last one possibly cut);
    empty for a kernel thread or a zombie. Raises ``OSError`` (path and errno only) when the
    process is gone or unreadable. Undecodable bytes are replaced, never raised."""
    raw = read_capped(f"{host_proc}/{pid}/cmdline", cap)
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _scan(
    host_proc: Path, deadline: float, only: Sequence[int] | None = None
) -> tuple[list[tuple[int, str]], int, bool]:
    """``(pid, role)`` of every recognised process, the count scanned, whether all were.

    A process that exits between the listing and the read is passed over, as are kernel
    threads and zombies (an empty command line). Raises ``OSError`` only when the procfs
    itself cannot be listed.
    """
    found: list[tuple[int, str]] = []
    pids = list_pids(host_proc) if only is None else list(only)
    scanned = 0
    for pid in pids[:MAX_PIDS]:
        if time.monotonic() > deadline:
            break
        scanned += 1
        try:
            cmdline = read_cmdline(host_proc, pid)
        except OSError:
            continue
        role = classify("", cmdline) if cmdline else None
        if role:
            found.append((pid, role))
    return found, scanned, scanned == len(pids)


def _place(host_proc: Path, pid: int, role: str) -> AgentProcess | None:
    try:
        path = pod_cgroup_path(parse_proc_cgroup(read_proc_cgroup(host_proc, pid)))
    except OSError:
        return None
    if path is None:
        return None
    return AgentProcess(pid, role, path, pod_uid(path), container_id_from_path(path))


def own_cgroup_path(own_proc: Path = Path("/proc")) -> str:
    """This process's pod cgroup path, as its own procfs shows it (``/`` in a private ns)."""
    return pod_cgroup_path(parse_proc_cgroup(read_proc_cgroup(own_proc, "self"))) or "/"


Pick = Callable[[Path, Sequence[AgentProcess], int, bool], Discovery]
"""Chooses the Agent among the processes placed (procfs, processes, scanned, complete):
``selfcheck.host.nodeagent.picker`` reads what the kernel shows of each candidate."""


def discover(
    host_proc: Path,
    mode: str = SIDECAR,
    own_path: str | None = None,
    budget: float = DISCOVERY_SECONDS,
    pids: Sequence[int] | None = None,
    *,
    pick: Pick | None = None,
) -> Discovery:
    """The Agent's processes: this pod's (sidecar) or the Agent pod's on this node (node).

    ``pick`` chooses among every Agent process placed (``host.nodeagent``: the node Agent among
    runners and second installs, the sidecar's by cgroup or network namespace). Without it,
    node mode takes the pod of the first ``agent run`` in a kubelet pod cgroup, and sidecar
    mode this pod's processes by cgroup. Raises ``OSError`` only when the host procfs cannot be
    listed. ``pids`` limits the scan (this pod's processes, read from its cgroups).
    """
    found, scanned, complete = _scan(host_proc, time.monotonic() + budget, pids)
    placed = [p for p in (_place(host_proc, pid, role) for pid, role in found) if p]
    if pick is not None:
        return pick(host_proc, placed, scanned, complete)
    if mode == NODE:
        pods = list(dict.fromkeys(p.pod_uid for p in placed if p.role == CORE and p.pod_uid))
        chosen = tuple(p for p in placed if pods and p.pod_uid == pods[0])
        return Discovery(chosen, scanned, complete, max(len(pods) - 1, 0))
    mine = own_path if own_path is not None else own_cgroup_path()
    chosen = tuple(p for p in placed if same_pod(mine, p.cgroup_path))
    return Discovery(chosen, scanned, complete)


# --- the environment, through the allow-list --------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentEnv:
    values: Mapping[str, str]
    truncated: bool
    blank: bool = False
    """The kernel showed no environment at all (0 bytes): the process has not finished its
    ``execve`` (its new memory is in place before its environment is laid out, fs/exec.c
    ``begin_new_exec`` then fs/binfmt_elf.c ``create_elf_tables``; until then
    fs/proc/base.c ``environ_read`` returns nothing) or is exiting. Not "no settings": an
    Agent always has variables (its image sets ``DOCKER_DD_AGENT``, DataDog/datadog-agent
    Dockerfiles/agent/Dockerfile), so it is read again next cycle."""


BLANK_ENVIRON = "shows no environment yet (the process is still starting): read again next cycle"


def parse_environ(
    buffer: bytes | bytearray, size: int | None = None, complete: bool = True
) -> dict[str, str]:
    """Allow-listed ``NAME=value`` pairs of the first ``size`` bytes of an environ block.

    Only names are compared (as bytes); a value is copied and decoded only for an allowed
    name. With ``complete`` false (the read hit its cap) the last, unterminated entry is
    dropped rather than kept cut short.
    """
    end = len(buffer) if size is None else size
    kept: dict[str, str] = {}
    start = 0
    while start < end:
        stop = buffer.find(b"\0", start, end)
        if stop < 0:
            if not complete:
                break
            stop = end
        equals = buffer.find(b"=", start, min(stop, start + 65))
        if equals > start and bytes(buffer[start:equals]) in _ALLOWED_BYTES:
            name = bytes(buffer[start:equals]).decode()
            kept[name] = bytes(buffer[equals + 1 : stop]).decode("utf-8", "replace")
        start = stop + 1
    return kept


def read_environ(host_proc: Path, pid: int, cap: int = ENVIRON_CAP) -> AgentEnv:
    """The allow-listed environment of ``pid``; raises ``OSError`` (path and errno only).

    Reading another process's environ needs ptrace read access (same user and no capability
    it lacks, or ``CAP_SYS_PTRACE``), so ``EACCES`` here means the identities differ.
    """
    buffer = bytearray(cap)
    size = 0
    try:
        fd = os.open(f"{host_proc}/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with memoryview(buffer) as view:
                while size < cap:
                    n = os.readv(fd, [view[size:]])
                    if n <= 0:
                        break
                    size += n
        finally:
            os.close(fd)
        truncated = size >= cap
        values = parse_environ(buffer, size, complete=not truncated)
        return AgentEnv(values, truncated, blank=size == 0)
    finally:
        buffer[:] = bytes(len(buffer))


# --- identity and mounts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentView:
    """One Agent process read from the host procfs; each part is ``None`` with its error."""

    process: AgentProcess
    identity: Identity | None
    mounts: tuple[Mount, ...] | None
    env: AgentEnv | None
    errors: Mapping[str, str] = field(default_factory=dict)
    """``{"environ": "<path>: Permission denied (EACCES)"}``: never file content."""
    denied: tuple[str, ...] = ()
    """The parts that failed with EACCES/EPERM."""


def _attempt(
    part: str,
    path: str,
    read: Callable[[], T],
    errors: dict[str, str],
    denied: list[str],
) -> T | None:
    try:
        return read()
    except OSError as error:
        errors[part] = describe(error, path)
        if isinstance(error, PermissionError):
            denied.append(part)
        return None


def read_view(host_proc: Path, process: AgentProcess) -> AgentView:
    """Status, mountinfo and the allow-listed environ of one Agent process."""
    errors: dict[str, str] = {}
    denied: list[str] = []
    pid, base = process.pid, f"{host_proc}/{process.pid}"
    identity = _attempt(
        "status", f"{base}/status", lambda: read_identity(host_proc, pid), errors, denied
    )
    mounts = _attempt(
        "mountinfo",
        f"{base}/mountinfo",
        lambda: tuple(read_mountinfo(host_proc, str(pid))),
        errors,
        denied,
    )
    env = _attempt(
        "environ", f"{base}/environ", lambda: read_environ(host_proc, pid), errors, denied
    )
    if env is not None and env.blank:
        errors["environ"] = f"{base}/environ {BLANK_ENVIRON}"
        env = None
    return AgentView(process, identity, mounts, env, errors, tuple(denied))


def agent_config(
    host_proc: Path,
    mode: str = SIDECAR,
    budget: float = DISCOVERY_SECONDS,
    pick: Pick | None = None,
) -> Mapping[str, str]:
    """The core Agent's allow-listed environment; empty when it cannot be found or read.

    For whoever decides required-ness: layer it ahead of this process's own environment
    (``{**os.environ, **agent_config(...)}``) so the Agent's real values win.
    """
    try:
        core = discover(host_proc, mode, budget=budget, pick=pick).core()
        if core is None:
            return MappingProxyType({})
        return MappingProxyType(dict(read_environ(host_proc, core.pid).values))
    except OSError:
        return MappingProxyType({})


# --- the listener -------------------------------------------------------------------------------

ACCEPTCON = 0x10000  # __SO_ACCEPTCON in /proc/net/unix's Flags column: a listening socket
SOCK_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}


@dataclass(frozen=True, slots=True)
class UnixEntry:
    inode: int
    kind: str
    flags: int
    path: str

    @property
    def listening(self) -> bool:
        """A stream socket in ``listen()``, or a bound datagram socket (which receives)."""
        return bool(self.flags & ACCEPTCON) if self.kind == "stream" else self.kind == "dgram"


def parse_net_unix(text: str) -> list[UnixEntry]:
    """``/proc/<pid>/net/unix``: ``Num RefCount Protocol Flags Type St Inode [Path]``."""
    entries: list[UnixEntry] = []
    for line in text.splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) < 8:
            continue
        try:
            flags, kind, inode = int(fields[3], 16), int(fields[4], 16), int(fields[6])
        except ValueError:
            continue
        entries.append(UnixEntry(inode, SOCK_TYPES.get(kind, str(kind)), flags, fields[7]))
    return entries


def socket_inodes(host_proc: Path, pid: int, limit: int = MAX_FDS) -> set[int]:
    """Inodes of the sockets ``pid`` holds (``fd/N -> socket:[inode]``); raises ``OSError``."""
    inodes: set[int] = set()
    fd_dir = f"{host_proc}/{pid}/fd"
    for count, name in enumerate(os.listdir(fd_dir)):  # noqa: PTH208 - a Path per fd is waste
        if count >= limit:
            break
        try:
            target = os.readlink(f"{fd_dir}/{name}")  # noqa: PTH115 - hot loop
        except FileNotFoundError:  # closed meanwhile; EACCES (not dumpable) is raised
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


class ListenerVerdict(enum.StrEnum):
    """Who, if anyone, listens at a socket path: a closed set, the ``verdict`` in details."""

    AGENT = "agent"
    FOREIGN = "foreign"
    STALE = "stale"
    NOT_LISTENING = "not_listening"
    NOT_SOCKET = "not_socket"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Listener:
    """Who listens on one socket path, and the evidence."""

    path: str
    verdict: ListenerVerdict
    holder: AgentProcess | None = None
    note: str = ""

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"path": self.path, "verdict": str(self.verdict)}
        if self.holder is not None:
            body["pid"], body["role"] = self.holder.pid, self.holder.role
        if self.note:
            body["note"] = self.note
        return body


def probe_file(path: str, kind: str) -> tuple[ListenerVerdict, str]:
    """Without a bound entry by that name: no file, not a socket, stale or bound elsewhere.

    ``connect()`` tells a live socket from a stale file without sending anything; a
    socket on a read-only mount still connects (sockets are exempt from ``EROFS``).
    """
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return ListenerVerdict.NOT_LISTENING, "no socket file: the Agent has not bound it (yet)"
    except OSError as error:
        return ListenerVerdict.UNKNOWN, describe(error, path)
    if not stat.S_ISSOCK(st.st_mode):
        return ListenerVerdict.NOT_SOCKET, "the path exists but is not a socket"
    sock_type = socket.SOCK_STREAM if kind == "stream" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_UNIX, sock_type) as sock:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
        except ConnectionRefusedError:
            return (
                ListenerVerdict.STALE,
                "a socket file with no listener (left by an earlier process)",
            )
        except OSError as error:
            return ListenerVerdict.UNKNOWN, describe(error, path)
    return ListenerVerdict.FOREIGN, "a socket not held by the Agent answers at this path"


def judge_listener(
    *,
    agent_path: str,
    own_path: str,
    kind: str,
    entries: list[UnixEntry],
    opened: str | None = None,
    held: Mapping[int, AgentProcess],
    unreadable: Sequence[int] = (),
    probed: tuple[ListenerVerdict, str] | None = None,
) -> Listener:
    """Agent listening, a foreign listener, a stale file, or not listening yet.

    ``entries`` are the Agent's network namespace's unix sockets; ``held`` maps the socket
    inodes the Agent's processes hold to those processes, ``unreadable`` the Agent PIDs whose
    descriptors could not be read (then a socket not in ``held`` may still be theirs: the
    verdict is ``unknown``, never ``foreign``). ``agent_path`` is the path as the
    Agent bound it, ``own_path`` the name the cycle's view gives the same file and
    ``opened`` where this process reaches it (inside the Agent's root, in its view);
    ``probed`` is ``probe_file``'s answer there when the helper holding the Agent's
    credentials made it (this process cannot follow that root).

    A socket bound under the same name but not by the Agent is ``foreign`` only when something
    answers at the Agent's path: in a network namespace shared with other containers
    (hostNetwork) the same name may be bound in another mount namespace entirely.
    """
    bound = [e for e in entries if e.path == agent_path and e.listening and e.kind == kind]
    for entry in bound:
        holder = held.get(entry.inode)
        if holder is not None:
            return Listener(own_path, ListenerVerdict.AGENT, holder)
    if bound and unreadable:
        return Listener(
            own_path,
            ListenerVerdict.UNKNOWN,
            note=f"cannot read the descriptors of Agent pid {unreadable[0]}",
        )
    verdict, note = probed or probe_file(opened or own_path, kind)
    if bound and verdict == ListenerVerdict.FOREIGN:
        note = f"socket inode {bound[0].inode} is not the Agent's"
    return Listener(own_path, verdict, note=note)


def read_net_unix(host_proc: Path, pid: int) -> list[UnixEntry]:
    """The unix sockets of ``pid``'s network namespace (psutil's ``net_connections`` reads
    ``PROCFS_PATH/net/unix``, the *reader's* namespace, wrong in node mode)."""
    return parse_net_unix(read_text(f"{host_proc}/{pid}/net/unix", NET_UNIX_CAP))


def held_sockets(
    host_proc: Path, processes: Sequence[AgentProcess]
) -> tuple[dict[int, AgentProcess], tuple[int, ...]]:
    """Socket inode -> Agent process, and the PIDs whose descriptors could not be read."""
    held: dict[int, AgentProcess] = {}
    unreadable: list[int] = []
    for process in processes:
        try:
            inodes = socket_inodes(host_proc, process.pid)
        except OSError:
            unreadable.append(process.pid)
            continue
        for inode in inodes:
            held.setdefault(inode, process)
    return held, tuple(unreadable)
