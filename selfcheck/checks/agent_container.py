"""``agent_container``: the Agent's own container, as the kernel shows it through hostPID.

Every other check proves what *this* container can do, and the sidecar stands for the Agent
only while it mirrors the Agent container's identity, mounts and environment. This check
reads the Agent's processes in ``/host/proc`` (``selfcheck.host.agent``) and compares the
core Agent's identity, capability sets, seccomp, no-new-privs and mount table with the chart's
table (helm-charts templates/_daemonset-volumes-linux.yaml; in node mode the Operator's
defaults, datadog-operator internal/controller/datadogagent/common/const.go) and, in sidecar
mode, with this process's own; its allow-listed ``DD_*`` settings with this process's; and it
shows who listens on the DogStatsD and APM sockets. Every difference is a finding naming the
field or volume to change. Nothing here ever fails a pod: drift is ``degraded``.

No environment *value* leaves ``selfcheck.host.agent``: findings and details name variables
only (docs/architecture.md: no path returns environment values).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from selfcheck import agentpod
from selfcheck.agentpod import DEFAULT_APM_SOCKET, DEFAULT_DOGSTATSD_SOCKET
from selfcheck.checks._common import Judge
from selfcheck.checks.security import host_pid_namespace
from selfcheck.config import Config, agent_bool, unix_socket_file
from selfcheck.context import CheckContext
from selfcheck.host import agent, nodeagent
from selfcheck.host.capabilities import decode
from selfcheck.host.eyes import discovery_proc, enter
from selfcheck.host.files import describe
from selfcheck.host.identity import Identity, mount_writable, read_identity
from selfcheck.host.procfs import Mount, read_mountinfo
from selfcheck.host.root import Root
from selfcheck.host.view import HeldSockets
from selfcheck.model import Finding, Outcome, Reason, Severity, Status, ok
from selfcheck.registry import CheckSpec, register

OWN_PROC = Path("/proc")

REMEDIATIONS = {
    Reason.NOT_FOUND: (
        "Run selfcheck with hostPID: true (the chart's default, datadog.useHostPID) and the "
        "procdir volume at /host/proc, in the Agent's pod (sidecar) or, for an Operator install, "
        "as the k8s/node DaemonSet with SELFCHECK_MODE=node on the same nodes as the Agent."
    ),
    Reason.DRIFT: (
        "Apply the fix printed under each finding: make the sidecar's securityContext, "
        "volumeMounts and DD_* env the Agent container's (kubectl get ds -o yaml, compare the "
        "agent and selfcheck containers), and give the Agent container the chart's volumes."
    ),
    Reason.FOREIGN_LISTENER: (
        "Another process holds the DogStatsD or APM socket path: metrics sent there never reach "
        "the Agent. Find the container that binds it (the finding names the path) and remove "
        "it, or give the Agent its own path (DD_DOGSTATSD_SOCKET / DD_APM_RECEIVER_SOCKET)."
    ),
    Reason.TWO_AGENTS: (
        "Two node Agents run on this node (the finding names both pods and containers): keep "
        "one installation, uninstall the other (helm uninstall, or delete its DatadogAgent "
        "resource): both report this node, and the default install of each binds the node's "
        "/var/run/datadog sockets."
    ),
    Reason.EACCES: (
        "The Agent's environ, mountinfo or file descriptors need ptrace read access: give this "
        "container the Agent container's runAsUser and no fewer capabilities (a process cannot "
        "read one holding capabilities it lacks), or add SYS_PTRACE in node mode."
    ),
}
JUDGE = Judge(REMEDIATIONS)


# --- the chart's table ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChartVolume:
    """One row of the Agent container's mount table; ``expected`` says when the chart (or the
    Operator, in node mode) mounts it, from the Agent's own settings; ``None`` means it is
    conditional on things not visible here, so only the sidecar comparison judges it."""

    name: str
    paths: Callable[[Mapping[str, str]], tuple[str, ...]]
    read_only: bool
    expected: Callable[[Mapping[str, str], str], bool | None]

    def fix(self, path: str) -> str:
        mode = "readOnly: true" if self.read_only else "read-write (no readOnly)"
        return f"the {self.name} volumeMount at {path}, {mode}"


def _true(env: Mapping[str, str], name: str) -> bool:
    return agent_bool(env.get(name, "")) is True


def _socket_dir(env: Mapping[str, str], name: str, default: str) -> str:
    return posixpath.dirname(env.get(name) or default)


def _apm_dir(env: Mapping[str, str]) -> tuple[str, ...]:
    apm = _socket_dir(env, "DD_APM_RECEIVER_SOCKET", DEFAULT_APM_SOCKET)
    dsd = _socket_dir(env, "DD_DOGSTATSD_SOCKET", DEFAULT_DOGSTATSD_SOCKET)
    return (apm,) if apm != dsd else ()


def _runtime_dirs(env: Mapping[str, str]) -> tuple[str, ...]:
    dirs = ["/host/var/run", "/host/var/run/containerd"]
    for name in ("DD_CRI_SOCKET_PATH", "DOCKER_HOST"):
        path = unix_socket_file(env.get(name))
        if path:
            dirs.append(posixpath.dirname(path))
    return tuple(dict.fromkeys(dirs))


def _path(name: str) -> str:
    return agentpod.volume(name).mount_path


def _ro(name: str) -> bool:
    return agentpod.volume(name).read_only


def _always(env: Mapping[str, str], mode: str) -> bool:
    return True


def _logs(env: Mapping[str, str], mode: str) -> bool:
    return _true(env, "DD_LOGS_ENABLED")


CHART_VOLUMES: tuple[ChartVolume, ...] = (
    ChartVolume("procdir", lambda e: (_path("procdir"),), _ro("procdir"), _always),
    ChartVolume("cgroups", lambda e: (_path("cgroups"),), _ro("cgroups"), _always),
    ChartVolume(
        "os-release-file",
        lambda e: (_path("os-release-file"),),
        _ro("os-release-file"),
        lambda e, mode: mode == agentpod.SIDECAR,  # the Operator mounts it only for CWS
    ),
    ChartVolume(
        "dsdsocket",
        lambda e: (_socket_dir(e, "DD_DOGSTATSD_SOCKET", DEFAULT_DOGSTATSD_SOCKET),),
        _ro("dsdsocket"),
        _always,
    ),
    ChartVolume("apmsocket", _apm_dir, _ro("apmsocket"), lambda e, mode: bool(_apm_dir(e))),
    ChartVolume("passwd", lambda e: (_path("passwd"),), _ro("passwd"), lambda e, mode: None),
    ChartVolume("runtimesocketdir", _runtime_dirs, _ro("runtimesocketdir"), _always),
    ChartVolume("logpodpath", lambda e: (_path("logpodpath"),), _ro("logpodpath"), _logs),
    ChartVolume(
        "logscontainerspath",
        lambda e: (_path("logscontainerspath"),),
        _ro("logscontainerspath"),
        _logs,
    ),
    ChartVolume("pointerdir", lambda e: (_path("pointerdir"),), _ro("pointerdir"), _logs),
)
"""The chart's table (``selfcheck.agentpod``) with which Agent setting moves each path and
when the Agent container must have it (the Operator mounts os-release only for CWS)."""


def _id(volume: ChartVolume, what: str) -> str:
    return f"agent_{volume.name.replace('-', '_')}_{what}"


def _spellings(path: str) -> tuple[str, ...]:
    """``/var/run`` is a symlink to ``/run`` in most images, and mountinfo shows the target."""
    if path.startswith("/var/run/") or path == "/var/run":
        return (path, "/run" + path.removeprefix("/var/run"))
    return (path,)


def mount_at(mounts: tuple[Mount, ...] | list[Mount], path: str) -> Mount | None:
    """The mount whose mount point is ``path`` (the last one stacked there), else ``None``."""
    return _at(_by_mount_point(mounts), path)


def _by_mount_point(mounts: tuple[Mount, ...] | list[Mount]) -> dict[str, tuple[int, Mount]]:
    """Each normalised mount point to the last mount stacked there and its place in the
    table: one pass for every volume's lookups, where each lookup walked the whole table."""
    return {posixpath.normpath(m.mount_point): (i, m) for i, m in enumerate(mounts)}


def _at(index: Mapping[str, tuple[int, Mount]], path: str) -> Mount | None:
    """The last mount in the table at any spelling of ``path``."""
    found = [index[p] for p in {posixpath.normpath(p) for p in _spellings(path)} if p in index]
    return max(found, key=lambda placed: placed[0])[1] if found else None


@dataclass(frozen=True, slots=True)
class VolumeState:
    volume: ChartVolume
    path: str
    mount: Mount | None

    @property
    def present(self) -> bool:
        return self.mount is not None

    @property
    def writable(self) -> bool:
        return self.mount is not None and mount_writable(self.mount)

    def describe(self) -> str:
        if self.mount is None:
            return "absent"
        return "read-write" if self.writable else "read-only"


def volume_states(
    mounts: tuple[Mount, ...] | list[Mount], env: Mapping[str, str]
) -> dict[str, VolumeState]:
    """Each volume of the table: the first of its paths that is a mount point, else absent."""
    states: dict[str, VolumeState] = {}
    index = _by_mount_point(mounts)
    for volume in CHART_VOLUMES:
        paths = volume.paths(env)
        if not paths:
            continue
        state = VolumeState(volume, paths[0], None)
        for path in paths:
            mount = _at(index, path)
            if mount is not None:
                state = VolumeState(volume, path, mount)
                break
        states[volume.name] = state
    return states


def _warning(fid: str, message: str, remediation: str) -> Finding:
    return Finding(fid, Severity.WARNING, message, remediation)


def table_findings(
    states: Mapping[str, VolumeState], env: Mapping[str, str], mode: str
) -> Iterator[Finding]:
    """The Agent container against the chart's (or the Operator's) table."""
    for state in states.values():
        volume = state.volume
        if not state.present:
            if volume.expected(env, mode):
                yield _warning(
                    _id(volume, "missing"),
                    f"The Agent container has no {volume.name} mount at {state.path}.",
                    f"Add {volume.fix(state.path)} to the Agent container (Helm "
                    "agents.volumeMounts, Operator override.nodeAgent.volumes).",
                )
            continue
        if volume.read_only and state.writable:
            yield _warning(
                _id(volume, "writable"),
                f"The Agent container mounts {volume.name} ({state.path}) read-write.",
                f"Set readOnly: true on the Agent container's {volume.name} volumeMount.",
            )
        elif not volume.read_only and not state.writable:
            yield _warning(
                _id(volume, "read_only"),
                f"The Agent container mounts {volume.name} ({state.path}) read-only: the Agent "
                "cannot create its socket there.",
                f"Remove readOnly from the Agent container's {volume.name} volumeMount.",
            )


def mount_drift(
    agent_states: Mapping[str, VolumeState], own_states: Mapping[str, VolumeState]
) -> Iterator[Finding]:
    """The sidecar's mounts against the Agent's: absent or read-only/read-write on one side."""
    for name, theirs in agent_states.items():
        mine = own_states.get(name)
        if mine is None or theirs.describe() == mine.describe():
            continue
        yield _warning(
            _id(theirs.volume, "drift"),
            f"{name} ({theirs.path}) is {theirs.describe()} in the Agent container but "
            f"{mine.describe()} in the sidecar, so the sidecar's verdicts on it are not the "
            "Agent's.",
            f"Give the sidecar the Agent container's {name} volumeMount exactly "
            f"({theirs.describe()} at {theirs.path})"
            if theirs.present
            else f"Give the Agent container {theirs.volume.fix(theirs.path)}, as the sidecar has.",
        )


# --- identity -----------------------------------------------------------------------------


def _caps(mask: int) -> str:
    return ", ".join(decode(mask))


def identity_drift(theirs: Identity, mine: Identity) -> Iterator[Finding]:
    """Field by field; each finding names the securityContext field that sets it."""
    scalar = (
        ("uid", theirs.uid, mine.uid, "securityContext.runAsUser"),
        ("gid", theirs.gid, mine.gid, "securityContext.runAsGroup"),
        (
            "no_new_privs",
            theirs.no_new_privs,
            mine.no_new_privs,
            "securityContext.allowPrivilegeEscalation",
        ),
        ("seccomp", theirs.seccomp_mode, mine.seccomp_mode, "securityContext.seccompProfile"),
    )
    for name, a, b, knob in scalar:
        if a is not None and b is not None and a != b:
            yield _warning(
                f"{name}_drift",
                f"{name}: the Agent container has {a}, the sidecar {b}.",
                f"Set the sidecar's {knob} to the Agent container's (it shows {a}).",
            )
    if set(theirs.groups) != set(mine.groups):
        shown = ",".join(str(g) for g in sorted(set(theirs.groups))) or "none"
        yield _warning(
            "groups_drift",
            f"groups: the Agent container has {shown}, the sidecar "
            f"{','.join(str(g) for g in sorted(set(mine.groups))) or 'none'}.",
            "Give the sidecar the Agent's supplemental groups (pod securityContext."
            "supplementalGroups applies to both; check for a container-level override).",
        )
    for label, a, b in (
        ("CapEff", theirs.capabilities.effective, mine.capabilities.effective),
        ("CapPrm", theirs.capabilities.permitted, mine.capabilities.permitted),
        ("CapBnd", theirs.capabilities.bounding, mine.capabilities.bounding),
    ):
        if a != b:
            parts = [
                f"the {who} has {_caps(mask)} that the {other} lacks"
                for who, other, mask in (
                    ("Agent container", "sidecar", a & ~b),
                    ("sidecar", "Agent container", b & ~a),
                )
                if mask
            ]
            yield _warning(
                f"{label.lower()}_drift",
                f"{label}: {'; '.join(parts)}.",
                "Make the sidecar's securityContext.capabilities (add/drop) and privileged "
                "the Agent container's.",
            )


def env_drift(theirs: Mapping[str, str], mine: Mapping[str, str]) -> Iterator[Finding]:
    """Allow-listed names whose values differ; the finding names them, never their values."""
    differ = sorted(n for n in agentpod.ENV_ALLOWLIST if theirs.get(n, "") != mine.get(n, ""))
    if differ:
        yield _warning(
            "env_drift",
            f"{len(differ)} DD_* {'setting differs' if len(differ) == 1 else 'settings differ'}"
            " between the Agent container and the "
            f"sidecar: {', '.join(differ)}; the Agent's values are the real configuration.",
            f"Give the sidecar the Agent container's env for {', '.join(differ)} (or the same "
            "envFrom ConfigMap).",
        )


# --- the listener ---------------------------------------------------------------------------

_LISTENER_FINDINGS = {
    agent.ListenerVerdict.FOREIGN: "A process other than the Agent's holds the socket",
    agent.ListenerVerdict.STALE: "The socket file has no listener",
    agent.ListenerVerdict.NOT_SOCKET: "The path is not a socket",
}


def listener_findings(listeners: Mapping[str, agent.Listener]) -> Iterator[Finding]:
    for name, listener in listeners.items():
        head = _LISTENER_FINDINGS.get(listener.verdict)
        if head is None:
            continue
        yield _warning(
            f"{name}_listener_{listener.verdict}",
            f"{name} socket {listener.path}: {head} ({listener.note}).",
            REMEDIATIONS[Reason.FOREIGN_LISTENER]
            if listener.verdict == agent.ListenerVerdict.FOREIGN
            else "Restart the Agent's container so that it binds the socket again, and mount "
            "the socket's directory, not the file (DataDog/datadog-agent#4948).",
        )


def _held(
    ctx: CheckContext, host_proc: Path, found: agent.Discovery
) -> tuple[dict[int, agent.AgentProcess], tuple[int, ...]]:
    """The socket inodes the Agent's processes hold: as the helper holding the Agent's uid
    read them when one did (this process may lack ptrace access to them), else read here."""
    seen = ctx.host.agent_sockets
    if seen is None:
        return agent.held_sockets(host_proc, found.processes)
    by_pid = {process.pid: process for process in found.processes}
    held = {inode: by_pid[pid] for inode, pid in seen.held.items() if pid in by_pid}
    return held, seen.unreadable


def _probed(seen: HeldSockets | None, path: str) -> tuple[agent.ListenerVerdict, str] | None:
    """Who answered at ``path`` when the helper connected there as the Agent, if it did."""
    probe = seen.probes.get(path) if seen is not None else None
    return (agent.ListenerVerdict(probe[0]), probe[1]) if probe is not None else None


def read_listeners(
    ctx: CheckContext,
    found: agent.Discovery,
    env: Mapping[str, str],
) -> tuple[dict[str, agent.Listener], list[str]]:
    """DogStatsD on the core Agent, APM on the trace-agent (when it runs or is configured),
    by the socket's name."""
    config, host_proc = ctx.config, discovery_proc(ctx.host.host_proc)
    anchor = found.core() or found.processes[0]
    theirs_root = Root(host_proc / str(anchor.pid) / "root")
    errors: list[str] = []
    try:
        entries = agent.read_net_unix(host_proc, anchor.pid)
    except OSError as error:
        return {}, [f"net/unix ({describe(error)})"]
    held, unreadable = _held(ctx, host_proc, found)
    sockets = [
        (
            "dogstatsd",
            env.get("DD_DOGSTATSD_SOCKET") or DEFAULT_DOGSTATSD_SOCKET,
            config.dogstatsd_socket,
            "dgram",
        )
    ]
    if found.of_role(agentpod.TRACE) or env.get("DD_APM_RECEIVER_SOCKET"):
        sockets.append(
            (
                "apm",
                env.get("DD_APM_RECEIVER_SOCKET") or DEFAULT_APM_SOCKET,
                config.apm_socket,
                "stream",
            )
        )
    if unreadable:
        pids = ", ".join(str(pid) for pid in unreadable)
        errors.append(f"the file descriptors of pid {pids}")
    seen = ctx.host.agent_sockets
    listeners = {
        name: agent.judge_listener(
            agent_path=theirs,
            own_path=str(mine),
            opened=str(theirs_root.at(theirs)),
            kind=kind,
            entries=entries,
            held=held,
            unreadable=unreadable,
            probed=_probed(seen, theirs),
        )
        for name, theirs, mine, kind in sockets
    }
    return listeners, errors


# --- two node Agents ----------------------------------------------------------------------------

TWO_NODE_AGENTS = "two_node_agents"


def rival_findings(found: agent.Discovery) -> Iterator[Finding]:
    """Node mode: every other node Agent pod the rule could not pass over (docs/node-mode.md)."""
    core = found.core()
    if core is None or not found.rivals:
        return
    others = ", ".join(p.named() for p in found.rivals)
    yield _warning(
        TWO_NODE_AGENTS,
        f"Two node Agents run on this node: {core.named()}, judged, and {others}; neither is a "
        "Cluster Checks Runner nor the ending pod of a rolling update.",
        REMEDIATIONS[Reason.TWO_AGENTS],
    )


# --- the whole judgement ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Own:
    """This process's side of the comparison (sidecar mode)."""

    identity: Identity | None
    mounts: tuple[Mount, ...]
    env: Mapping[str, str]


def read_own(own_mounts: list[Mount] | OSError) -> Own:
    try:
        identity: Identity | None = read_identity(OWN_PROC)
    except OSError:
        identity = None
    mounts = () if isinstance(own_mounts, OSError) else tuple(own_mounts)
    env = {k: v for k, v in os.environ.items() if k in agentpod.ENV_ALLOWLIST}
    return Own(identity, mounts, env)


def _agent_details(view: agent.AgentView, states: Mapping[str, VolumeState]) -> dict[str, object]:
    details: dict[str, object] = {}
    if view.identity is not None:
        ident = view.identity
        caps = ident.capabilities.named()
        details.update(
            uid=ident.uid,
            gid=ident.gid,
            groups=sorted(set(ident.groups)),
            seccomp=ident.seccomp_mode,
            no_new_privs=ident.no_new_privs,
            CapEff=caps["CapEff"],
        )
    if view.mounts is not None:
        details["mounts"] = {name: s.describe() for name, s in states.items()}
    if view.env is not None:
        details["config_names"] = sorted(view.env.values)
        details["config_truncated"] = view.env.truncated
    if view.errors:
        details["unreadable"] = dict(view.errors)
    return details


def _drift(
    view: agent.AgentView, own: Own, states: Mapping[str, VolumeState], env: Mapping[str, str]
) -> list[Finding]:
    """The sidecar against the Agent. A sidecar with none of the Agent's host volumes is bare
    by design (it looks through the Agent's eyes), so its mounts are not compared."""
    findings: list[Finding] = []
    if view.identity is not None and own.identity is not None:
        findings += identity_drift(view.identity, own.identity)
    own_states = volume_states(own.mounts, env)
    if states and any(state.present for state in own_states.values()):
        findings += mount_drift(states, own_states)
    if view.env is not None:
        findings += env_drift(env, own.env)
    return findings


def _as_notes(findings: list[Finding]) -> list[Finding]:
    """Drift is only a note while every verdict is the Agent's own view: it matters for the
    fallback to selfcheck's own mounts, not for what is judged now."""
    return [replace(f, severity=Severity.INFO) for f in findings]


def judge(
    mode: str,
    *,
    found: agent.Discovery,
    view: agent.AgentView,
    own: Own | None,
    listeners: Mapping[str, agent.Listener],
    listener_errors: list[str],
    agent_view: bool = False,
) -> Outcome:
    """Findings from what was read; ``own`` is ``None`` in node mode (nothing to mirror).
    ``agent_view``: the Agent's root can be entered, so the verdicts are its own."""
    env = view.env.values if view.env is not None else {}
    states = volume_states(view.mounts, env) if view.mounts is not None else {}
    findings: list[Finding] = [*table_findings(states, env, mode)] if states else []
    if own is not None:
        drift = _drift(view, own, states, env)
        findings += _as_notes(drift) if agent_view else drift
    findings += listener_findings(listeners)
    findings += rival_findings(found)
    details: dict[str, object] = {
        "mode": mode,
        "container": view.process.to_json(),
        "processes": [p.to_json() for p in found.processes],
        "agent": _agent_details(view, states),
        "listeners": {name: li.to_json() for name, li in listeners.items()},
    }
    if found.other_pods:
        details["other_agent_pods"] = found.other_pods
    if found.why:
        details["chosen"] = found.why
    if found.rivals:
        details["other_node_agents"] = [p.to_json() for p in found.rivals]
    where = (
        f"Agent container {view.process.container_id[:12]}"
        if view.process.container_id
        else f"Agent pid {view.process.pid}"
    )
    ids = [f.id for f in findings if f.severity is not Severity.INFO]
    if any(f.id.endswith(f"_listener_{agent.ListenerVerdict.FOREIGN}") for f in findings):
        reason = Reason.FOREIGN_LISTENER
    elif TWO_NODE_AGENTS in ids:
        reason = Reason.TWO_AGENTS
    elif ids:
        reason = Reason.DRIFT
    elif (view.denied or listener_errors) and not agent_view:
        unreadable = ", ".join([*view.denied, *listener_errors])
        return JUDGE.outcome(
            Status.DEGRADED,
            Reason.EACCES,
            f"{where}: cannot read {unreadable} of the Agent's process "
            f"{view.process.pid}; this container lacks its identity or capabilities",
            details=details,
        )
    else:
        listening = ", ".join(f"{name} {li.verdict}" for name, li in listeners.items())
        return ok(
            f"{where} matches the chart's table"
            + (" and this sidecar" if own is not None else "")
            + (f"; listeners: {listening}" if listening else "")
            + (f"; noted: {', '.join(f.id for f in findings)}" if findings else ""),
            details=details,
            findings=tuple(findings),
        )
    counted = f"{len(ids)} differences ({ids[0]}" + (
        f" and {len(ids) - 1} more" if len(ids) > 1 else ""
    )
    if reason is Reason.TWO_AGENTS:
        rivals = ", ".join(p.named() for p in found.rivals)
        counted = f"judged, with another node Agent beside it ({rivals}; see the findings)"
    return JUDGE.outcome(
        Status.DEGRADED,
        reason,
        f"{where}: {counted}" + ("" if reason is Reason.TWO_AGENTS else "; see the findings)"),
        details=details,
        findings=tuple(findings),
    )


def _absent(config: Config, mode: str, reason: Reason, message: str) -> Outcome:
    """No Agent to judge: a note in a default sidecar install, degraded when asked for."""
    status = Status.DEGRADED if mode == agentpod.NODE else Status.SKIPPED
    return Outcome(status, reason, message, REMEDIATIONS[Reason.NOT_FOUND], details={"mode": mode})


def _own_mounts() -> list[Mount] | OSError:
    """selfcheck's own mount table, whoever's eyes the cycle looks through."""
    try:
        return read_mountinfo(OWN_PROC)
    except OSError as error:
        return error


def run(ctx: CheckContext) -> Outcome:
    """Reads the host procfs where this process reaches it (``ctx.host.host_proc``)."""
    config = ctx.config
    mode = config.mode
    host_proc = discovery_proc(ctx.host.host_proc)
    if not host_pid_namespace(host_proc):
        return _absent(
            config,
            mode,
            Reason.NOT_APPLICABLE if mode == agentpod.SIDECAR else Reason.NOT_FOUND,
            f"{config.host_proc} is not the node's PID namespace (no hostPID): the Agent's "
            "processes are not visible, so its container cannot be compared",
        )
    try:
        found = ctx.host.eyes.discovery or agent.discover(
            host_proc, mode, pick=nodeagent.picker(mode)
        )
    except OSError as error:
        return _absent(config, mode, Reason.NOT_FOUND, f"cannot list {config.host_proc}: {error}")
    core = found.core()
    if core is None:
        scope = _scope(config, mode)
        return _absent(
            config,
            mode,
            Reason.NOT_FOUND,
            f"no 'agent run' process {scope} among {found.scanned} processes"
            + ("" if found.complete else " (scan cut short)")
            + (f": {found.why}" if found.why else ""),
        )
    view = agent.read_view(host_proc, core)
    env = view.env.values if view.env is not None else {}
    listeners, listener_errors = read_listeners(ctx, found, env)
    own = read_own(_own_mounts()) if mode == agentpod.SIDECAR else None
    entered = not isinstance(enter(host_proc, core.pid), str)
    return judge(
        mode,
        found=found,
        view=view,
        own=own,
        listeners=listeners,
        listener_errors=listener_errors,
        agent_view=entered,
    )


def _catalog() -> dict[str, str]:
    return {
        "agent_<volume>_missing / _writable / _read_only": "the Agent container against the "
        "chart's mount table (the Operator's in node mode)",
        "agent_<volume>_drift": "a volume absent, read-only or read-write on one side only",
        "uid/gid/groups/no_new_privs/seccomp/capeff/capprm/capbnd_drift": "identity drift",
        "env_drift": "allow-listed DD_* settings that differ (names only, never values)",
        "<dogstatsd|apm>_listener_<foreign|stale|not_socket>": "who holds the socket",
        TWO_NODE_AGENTS: "node mode: a second node Agent pod beside the one judged (neither a "
        "Cluster Checks Runner nor a rolling update's ending pod), both named",
    }


IDENTITY_FIELDS = (
    "uid",
    "gid",
    "groups",
    "no_new_privs",
    "seccomp",
    "capeff",
    "capprm",
    "capbnd",
)
LISTENER_SOCKETS = ("dogstatsd", "apm")


def _scope(config: Config, mode: str) -> str:
    """Where the Agent was looked for, in words true here: a bare machine has no pod."""
    if not config.containerized:
        return "on this machine"
    return "in this pod" if mode == agentpod.SIDECAR else "in any pod on this node"


def declared_findings() -> frozenset[str]:
    """Every finding id this check can report: the ``finding`` label's closed set."""
    volumes = {
        _id(volume, what)
        for volume in CHART_VOLUMES
        for what in ("missing", "writable", "read_only", "drift")
    }
    identity = {f"{name}_drift" for name in IDENTITY_FIELDS}
    listeners = {
        f"{sock}_listener_{verdict}" for sock in LISTENER_SOCKETS for verdict in _LISTENER_FINDINGS
    }
    return frozenset({*volumes, *identity, *listeners, "env_drift", TWO_NODE_AGENTS})


SPEC = register(
    CheckSpec(
        id="agent_container",
        title="the Agent's own container, read from /host/proc",
        run=run,
        proves=(
            "with hostPID, the Agent's processes (agent run, trace-agent, process-agent, "
            "system-probe) of this pod (sidecar) or of the Agent pod on this node "
            "(SELFCHECK_MODE=node): their uid, groups, capability sets, seccomp, no-new-privs "
            "and mount table against the chart's table and this sidecar's own, their "
            "allow-listed DD_* settings against this sidecar's, and that the process holding "
            "the DogStatsD and APM sockets is the Agent's."
        ),
        why=(
            "The sidecar's verdicts are the Agent's only while it mirrors the Agent container; "
            "a procdir missing from the Agent but present in the sidecar, or a drifted DD_* "
            "value, makes every other check prove the wrong container."
        ),
        remediations=REMEDIATIONS,
        required_because="optional; SELFCHECK_MODE=node or SELFCHECK_REQUIRE=agent_container "
        "make 'no Agent found' degraded instead of skipped",
        catalog_title="Findings",
        catalog=_catalog(),
        findings=declared_findings(),
        runs_as_selfcheck=True,
        needs_view=False,
    )
)
