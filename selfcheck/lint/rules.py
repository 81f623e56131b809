"""One rule per check id: what the runtime check would say on a node, read from the pod spec.

Each rule looks at every container that needs the capability: the agent container and the
selfcheck sidecar decide the status (the sidecar's verdict gates readiness; the agent's is
what the Agent really has), the other Agent containers add notes. The mount table is the
chart's and the Operator's (helm-charts charts/datadog/templates, datadog-operator
internal/controller/datadogagent/common/const.go); paths follow the same settings the runtime
reads (``HOST_PROC``, ``DD_CONTAINER_CGROUP_ROOT``, ``HOST_ETC``, the socket variables).
Statuses and reasons are the runtime's; the remediation comes from the check's catalog.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from selfcheck.agentpod import DEFAULT_APM_SOCKET, DEFAULT_DOGSTATSD_SOCKET
from selfcheck.config import UDP, Config, agent_int, load, unix_socket_file
from selfcheck.host.runtimes import cri_runtime
from selfcheck.lint.catalog import agent_bool, bad_value_fix, remediation
from selfcheck.lint.pod import SIDECAR, Container, PodTemplate
from selfcheck.model import Finding, Outcome, Reason, Status

DEFAULT_RUNTIME_SOCKETS = (
    "/var/run/docker.sock",
    "/var/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
)
"""The Agent's socket discovery without settings, each also under /host (the Agent's
environment_containers.go)."""
CRI_ONLY = (
    "the Agent runs the CRI check only and misses the containerd or CRI-O check and collector "
    "(environment_containers.go picks them by the path's name); set "
    "DD_AUTOCONFIG_INCLUDE_FEATURES=containerd (or crio), or use the path that names the runtime"
)
_RANK = {Status.ERROR: 0, Status.FAILED: 1, Status.DEGRADED: 2, Status.OK: 3, Status.SKIPPED: 4}


@dataclass(slots=True)
class Verdict:
    """Issues and notes gathered for one check id; ``outcome`` picks the worst issue."""

    check: str
    issues: list[tuple[Status, Reason, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    fixes: dict[Reason, str] = field(default_factory=dict)

    def add(self, status: Status, reason: Reason, container: str, message: str) -> None:
        self.issues.append((status, reason, f"{container}: {message}"))

    def note(self, container: str, message: str) -> None:
        self.notes.append(f"{container}: {message}")

    def outcome(self, ok_message: str, **details: object) -> Outcome:
        body: dict[str, object] = {**details}
        if self.notes:
            body["notes"] = list(self.notes)
        if not self.issues:
            return Outcome(
                Status.OK, Reason.OK, ok_message, details=body, findings=tuple(self.findings)
            )
        ordered = sorted(self.issues, key=lambda issue: _RANK[issue[0]])
        status, reason, message = ordered[0]
        if len(ordered) > 1:
            body["issues"] = [m for _, _, m in ordered]
            message += f" (and {len(ordered) - 1} more)"
        return Outcome(
            status,
            reason,
            message,
            self.fixes.get(reason) or remediation(self.check, reason),
            details=body,
            findings=tuple(self.findings),
        )


def host_proc(c: Container) -> str:
    return c.setting("HOST_PROC") or "/host/proc"


def cgroup_root(c: Container) -> str:
    return c.setting("DD_CONTAINER_CGROUP_ROOT") or "/host/sys/fs/cgroup"


def etc_file(c: Container, name: str, default: str) -> str:
    host_etc = c.setting("HOST_ETC")
    return posixpath.join(host_etc, name) if host_etc else default


def node_file(c: Container, path: str) -> str | None:
    """The node's path behind a container path, when it is on a hostPath mount."""
    found = c.mount_for(path)
    if found is None or not found[0].is_host:
        return None
    return found[0].origin(found[1])


def _needers(pod: PodTemplate, optional: Iterable[str]) -> list[tuple[Container, bool]]:
    """(container, decides the status): the agent and the sidecar decide, others add notes."""
    found = [(pod.agent, True)]
    if pod.sidecar is not None:
        found.append((pod.sidecar, True))
    found += [(c, False) for c in pod.containers if c.role in optional]
    return found


AGENT_HELPERS = ("trace-agent", "process-agent", "system-probe")
"""The Agent containers besides ``agent`` that read the host files too (notes only)."""


@dataclass(frozen=True, slots=True)
class HostFileRule:
    """A container path that must be the node's ``node_path`` through a hostPath mount.

    Not mounted at all is ``failed``, or ``degraded`` with hostPID where the Agent falls back
    and still works (``fallback`` says how, in the message).
    """

    check: str
    path_of: Callable[[Container], str]
    node_path: str
    wrong: Reason
    volume: str
    ok: str
    optional: tuple[str, ...] = ()
    fallback: str = ""

    def __call__(self, pod: PodTemplate) -> Outcome:
        verdict = Verdict(self.check)
        path_of, node_path, wrong, volume = self.path_of, self.node_path, self.wrong, self.volume
        falls_back = bool(self.fallback) and pod.host_pid
        missing = Status.DEGRADED if falls_back else Status.FAILED
        fallback = self.fallback if falls_back else ""
        for c, decides in _needers(pod, self.optional):
            path = path_of(c)
            found = c.mount_for(path)
            if found is None:
                status, reason = missing, Reason.ENOENT
                text = f"{path} is not mounted (no {volume} volumeMount){fallback}"
            elif not found[0].is_host or found[0].origin(found[1]) != node_path:
                status, reason = Status.FAILED, wrong
                seen = found[0].origin(found[1]) if found[0].is_host else f"a {found[0].source}"
                text = f"{path} is {seen} (volume {found[0].volume}), not the node's {node_path}"
            else:
                continue
            if decides:
                verdict.add(status, reason, c.name, text)
            else:
                verdict.note(c.name, text + f"; it would report {reason} for its own use")
        return verdict.outcome(self.ok)


procfs = HostFileRule(
    "procfs",
    host_proc,
    "/proc",
    Reason.NOT_PROCFS,
    "procdir",
    "the node's /proc is mounted at the procfs path of every Agent container",
    AGENT_HELPERS,
    # With hostPID the Agent falls back to its own /proc, which shows the node's processes
    # (fixup_init.go): process metrics work, the PID-to-container lookup does not.
    "; with hostPID the Agent falls back to its own /proc, without container tags",
)
cgroups = HostFileRule(
    "cgroups",
    cgroup_root,
    "/sys/fs/cgroup",
    Reason.NO_CONTROLLERS,
    "cgroups",
    "the node's /sys/fs/cgroup is mounted at the cgroup root",
    AGENT_HELPERS,
)
os_release = HostFileRule(
    "os_release",
    lambda c: etc_file(c, "os-release", "/host/etc/os-release"),
    "/etc/os-release",
    Reason.PARSE_ERROR,
    "os-release-file",
    "the node's /etc/os-release is mounted",
)


def passwd(pod: PodTemplate) -> Outcome:
    v = Verdict("passwd")
    for c, decides in _needers(pod, ("process-agent",)):
        path = etc_file(c, "passwd", "/etc/passwd")
        host = node_file(c, path) == "/etc/passwd"
        uid = c.uid
        if uid == 0 and not host:
            text = f"runs as root with the image's own {path}: host users go unnamed"
            if decides:
                v.add(Status.DEGRADED, Reason.LOW_UID_COVERAGE, c.name, text)
            else:
                v.note(c.name, text)
        elif uid is not None and uid != 0 and host and not c.setting("HOST_ETC"):
            v.add(
                Status.DEGRADED,
                Reason.IDENTITY_MISMATCH,
                c.name,
                f"runs as UID {uid} with the node's /etc/passwd mounted over the image's: "
                "its own user is no longer named (the chart mounts passwd only for root)",
            )
        elif uid is None:
            v.note(c.name, "runAsUser is not set and the image's user is unknown")
    return v.outcome("the passwd mount matches each container's identity")


def _socket_settings(c: Container) -> list[tuple[str, str]]:
    found = []
    for name in ("DD_CRI_SOCKET_PATH", "DOCKER_HOST"):
        raw = c.setting(name)
        path = unix_socket_file(raw)
        if path:
            found.append((name, path))
    return found


def runtime_socket(pod: PodTemplate) -> Outcome:
    v = Verdict("runtime_socket")
    for c, decides in _needers(pod, ("trace-agent", "process-agent")):
        settings = _socket_settings(c)
        missing = [
            f"{name}={path} is outside every hostPath mount of the container"
            for name, path in settings
            if node_file(c, path) is None
        ]
        if not settings:
            candidates = [p for d in DEFAULT_RUNTIME_SOCKETS for p in (d, "/host" + d)]
            if not any(node_file(c, p) for p in candidates):
                missing.append(
                    "no hostPath mount covers a default runtime socket path "
                    "(/host/var/run/containerd/containerd.sock, docker.sock, crio.sock)"
                )
        for text in missing:
            if decides:
                v.add(Status.FAILED, Reason.ENOENT, c.name, text)
            else:
                v.note(c.name, text)
        for name, path in settings:
            if name == "DD_CRI_SOCKET_PATH" and cri_runtime(path) == "cri":
                v.note(c.name, f"{name}={path} names neither containerd nor crio: {CRI_ONLY}")
        _socket_identity(pod, c, v, decides)
    return v.outcome("the runtime socket's directory is mounted where the Agent looks")


def _socket_identity(pod: PodTemplate, c: Container, v: Verdict, decides: bool) -> None:
    """A non-root process reaches a 0660 socket only through its group (datadog-agent#17713)."""
    if c.uid in (0, None):
        return
    if c.gid != 0 and not pod.supplemental_groups:
        text = (
            f"runs as {c.uid}:{c.gid} with no supplementalGroups: a runtime socket of mode "
            "0660 (root and the runtime's group) refuses it"
        )
        if decides:
            v.add(Status.FAILED, Reason.EACCES, c.name, text)
            return
    v.note(
        c.name,
        f"runs as UID {c.uid}: the runtime socket's group must be its group "
        "or in spec.securityContext.supplementalGroups",
    )


def _shared_socket(
    v: Verdict, listener: Container, path: str, users: list[tuple[Container, str]]
) -> None:
    """A socket ``listener`` creates at ``path``; each user must reach the same file."""
    found = listener.mount_for(path)
    if found is None or found[0].read_only:
        why = "is on no volume" if found is None else f"is on read-only volume {found[0].volume}"
        v.add(
            Status.FAILED,
            Reason.ENOENT,
            listener.name,
            f"{path} {why}: it cannot create a socket other containers reach",
        )
        return
    mount, rest = found
    if not mount.is_host:
        v.note(listener.name, f"{path} is on a {mount.source}: only this pod's containers reach it")
    origin = mount.origin(rest)
    for user, user_path in users:
        seen = user.mount_for(user_path)
        if seen is None:
            v.add(
                Status.FAILED,
                Reason.ENOENT,
                user.name,
                f"{user_path} is on no volume: it lacks the {posixpath.dirname(path)} "
                f"directory {listener.name} creates the socket in (volume {mount.volume})",
            )
        elif seen[0].origin(seen[1]) != origin:
            v.add(
                Status.FAILED,
                Reason.ENOENT,
                user.name,
                f"{user_path} is {seen[0].origin(seen[1])}, but {listener.name} listens on "
                f"{origin}",
            )


def _no_socket(check: str, container: str, text: str) -> Outcome:
    """``failed``/``enoent`` with nothing else to judge: no process opens the socket."""
    v = Verdict(check)
    v.add(Status.FAILED, Reason.ENOENT, container, text)
    return v.outcome("")


DOGSTATSD_SETTINGS = ("DD_DOGSTATSD_SOCKET", "DD_DOGSTATSD_PORT", "DD_DOGSTATSD_NON_LOCAL_TRAFFIC")


def dogstatsd_settings(c: Container) -> Config:
    """``c``'s DogStatsD settings read by the runtime's own loader (a container's environment
    is the install's): which transport applications are offered, the port, non-local."""
    env = {name: value for name in DOGSTATSD_SETTINGS if (value := c.setting(name)) is not None}
    return load(frozenset(), env, containerized=lambda _env: (True, "a container of the manifest"))


def _udp_words(dsd: Config) -> str:
    return f"applications send over UDP port {dsd.dogstatsd_port} (judged by dogstatsd_udp)"


def _private_socket(pod: PodTemplate, path: str, dsd: Config, v: Verdict) -> Outcome | None:
    """The socket in a directory of the Agent's pod only (an emptyDir): the chart's
    ``useSocketVolume: false`` when UDP takes other pods' traffic, else unreachable."""
    agent = pod.agent
    found = agent.mount_for(path)
    if found is None or found[0].is_host or found[0].read_only:
        return None
    where = f"{path} is on {found[0].source} volume {found[0].volume}"
    if dsd.udp_offered:
        return Outcome(
            Status.SKIPPED,
            Reason.NOT_ENABLED,
            f"{agent.name}: {where}: only the Agent's own containers reach it (Helm "
            f"datadog.dogstatsd.useSocketVolume: false); {_udp_words(dsd)}",
        )
    v.add(
        Status.FAILED,
        Reason.NOT_SHARED,
        agent.name,
        f"{where}: application pods mount the node's directory and cannot reach it, and the "
        "UDP port does not take their traffic either (DD_DOGSTATSD_NON_LOCAL_TRAFFIC)",
    )
    return None


def dogstatsd_socket(pod: PodTemplate) -> Outcome:
    v = Verdict("dogstatsd_socket")
    agent = pod.agent
    dsd = dogstatsd_settings(agent)
    path = agent.setting("DD_DOGSTATSD_SOCKET")
    if not path and dsd.dogstatsd_transport == UDP:
        return Outcome(
            Status.SKIPPED,
            Reason.NOT_ENABLED,
            f"{agent.name}: DD_DOGSTATSD_SOCKET is not set: {_udp_words(dsd)}",
        )
    if not path:
        why = "DD_DOGSTATSD_SOCKET is not set: the Agent opens no DogStatsD socket"
        return _no_socket(v.check, agent.name, why)
    private = _private_socket(pod, path, dsd, v)
    if private is not None:
        return private
    users = []
    trace = pod.role("trace-agent")
    if trace is not None:
        users.append((trace, trace.setting("DD_DOGSTATSD_SOCKET") or path))
    if pod.sidecar is not None:
        users.append(
            (pod.sidecar, pod.sidecar.setting("DD_DOGSTATSD_SOCKET") or DEFAULT_DOGSTATSD_SOCKET)
        )
    _shared_socket(v, agent, path, users)
    return v.outcome(f"{path} is in a directory shared by the agent, trace-agent and sidecar")


def _udp_container_port(c: Container) -> tuple[int | None, int | None] | None:
    """The agent container's declared UDP port (``containerPort``, ``hostPort``), if any."""
    ports = c.raw.get("ports")
    for entry in ports if isinstance(ports, list) else ():
        if isinstance(entry, dict) and str(entry.get("protocol", "TCP")).upper() == "UDP":
            container, host = entry.get("containerPort"), entry.get("hostPort")
            return (
                container if isinstance(container, int) else None,
                host if isinstance(host, int) else None,
            )
    return None


def _udp_bad_values(v: Verdict, agent: Container) -> None:
    _bad_bool(v, agent, "DD_DOGSTATSD_NON_LOCAL_TRAFFIC")
    raw = agent.setting("DD_DOGSTATSD_PORT")
    if raw and agent_int(raw) is None:
        v.add(
            Status.DEGRADED,
            Reason.BAD_VALUE,
            agent.name,
            f"DD_DOGSTATSD_PORT={raw[:40]!r} is not a number the Agent accepts: it reads 0 and "
            "opens no UDP port",
        )
        v.fixes[Reason.BAD_VALUE] = bad_value_fix("DD_DOGSTATSD_PORT", "port")


def _udp_ports(v: Verdict, agent: Container, port: int) -> str:
    """The declared UDP port against the one the Agent binds; the words for the message."""
    declared = _udp_container_port(agent)
    if declared is None:
        return "no UDP containerPort: applications reach it at the pod's address only"
    container, host = declared
    if container is not None and container != port:
        v.add(
            Status.FAILED,
            Reason.ECONNREFUSED,
            agent.name,
            f"declares containerPort {container}/UDP (hostPort {host or 'none'}), but the Agent "
            f"listens on DD_DOGSTATSD_PORT={port}: datagrams sent there are refused",
        )
    if host:
        return f"hostPort {host}/UDP: applications reach it at the node's address"
    return "no hostPort: applications reach it at the pod's address or through a Service"


def dogstatsd_udp(pod: PodTemplate) -> Outcome:
    v = Verdict("dogstatsd_udp")
    agent = pod.agent
    _udp_bad_values(v, agent)
    dsd = dogstatsd_settings(agent)
    port = dsd.dogstatsd_port
    if port <= 0 and not v.issues:
        return Outcome(
            Status.SKIPPED,
            Reason.NOT_ENABLED,
            "DD_DOGSTATSD_PORT is 0: the Agent opens no UDP port",
        )
    use = agent.setting("DD_USE_DOGSTATSD")
    if use is not None and agent_bool(use) is False:
        v.add(
            Status.FAILED,
            Reason.ECONNREFUSED,
            agent.name,
            "DD_USE_DOGSTATSD is false: the Agent runs no DogStatsD server",
        )
    if not dsd.udp_offered and not v.issues:
        return Outcome(
            Status.SKIPPED,
            Reason.NOT_ENABLED,
            "applications send to DD_DOGSTATSD_SOCKET, and the UDP port listens on the Agent "
            "pod's loopback only (DD_DOGSTATSD_NON_LOCAL_TRAFFIC false)",
        )
    if dsd.dogstatsd_transport == UDP and not dsd.dogstatsd_non_local_traffic:
        v.add(
            Status.FAILED,
            Reason.NOT_SHARED,
            agent.name,
            f"UDP port {port} listens on the pod's loopback only (DD_DOGSTATSD_NON_LOCAL_TRAFFIC "
            "is not true) and DD_DOGSTATSD_SOCKET is not set: applications in other pods have "
            "no way to send metrics",
        )
    reach = _udp_ports(v, agent, port)
    return v.outcome(f"the Agent listens on UDP {port} on every address; {reach}", port=port)


def apm_socket(pod: PodTemplate) -> Outcome:
    v = Verdict("apm_socket")
    gate = pod.sidecar or pod.agent
    if not gate.setting("DD_APM_RECEIVER_SOCKET"):
        return Outcome(
            Status.SKIPPED, Reason.NOT_ENABLED, f"DD_APM_RECEIVER_SOCKET is not set in {gate.name}"
        )
    trace = pod.role("trace-agent")
    if trace is None:
        why = "the pod has no trace-agent container: nothing listens on the APM socket"
        return _no_socket(v.check, pod.agent.name, why)
    path = trace.setting("DD_APM_RECEIVER_SOCKET")
    if not path:
        why = "DD_APM_RECEIVER_SOCKET is not set: the trace-agent opens no socket"
        return _no_socket(v.check, trace.name, why)
    users = []
    if pod.sidecar is not None:
        users.append(
            (pod.sidecar, pod.sidecar.setting("DD_APM_RECEIVER_SOCKET") or DEFAULT_APM_SOCKET)
        )
    _shared_socket(v, trace, path, users)
    return v.outcome(f"{path} is in a directory shared by the trace-agent and the sidecar")


def bool_setting(c: Container, name: str) -> tuple[bool, str | None]:
    """(value as the Agent reads it, the raw value when the Agent rejects it)."""
    raw = c.setting(name)
    if raw is None or raw == "":
        return False, None
    parsed = agent_bool(raw)
    return (False, raw) if parsed is None else (parsed, None)


def _bad_bool(v: Verdict, c: Container, name: str) -> bool:
    value, bad = bool_setting(c, name)
    if bad is not None:
        v.add(
            Status.DEGRADED,
            Reason.BAD_VALUE,
            c.name,
            f"{name}={bad[:40]!r} is not a boolean to the Agent (Go strconv.ParseBool): "
            "it reads false",
        )
        v.fixes[Reason.BAD_VALUE] = bad_value_fix(name, "bool")
    return value


def origin_detection(pod: PodTemplate) -> Outcome:
    v = Verdict("origin_detection")
    name = "DD_DOGSTATSD_ORIGIN_DETECTION"
    enabled = _bad_bool(v, pod.agent, name)
    for c, decides in _needers(pod, ()):
        if decides and node_file(c, host_proc(c)) != "/proc":
            v.add(
                Status.FAILED,
                Reason.PROCFS_MISSING,
                c.name,
                f"{host_proc(c)} is not the node's /proc: no PID can be mapped to a container",
            )
    if dogstatsd_settings(pod.agent).dogstatsd_transport == UDP:
        return v.outcome(
            "over UDP only client-sent origins tag (c:in-, c:ci-, e:), which need the node's "
            "/proc and cgroups, not hostPID (DD_DOGSTATSD_ORIGIN_DETECTION is for socket traffic)"
        )
    if not pod.host_pid:
        why = "" if enabled else " (origin detection is off, so this gates nothing)"
        v.add(
            Status.FAILED,
            Reason.NOT_HOST_PID,
            "pod",
            f"hostPID is not true: senders in other pods arrive with PID 0{why}",
        )
    state = "on" if enabled else "off"
    return v.outcome(f"hostPID and the node's /proc are in place (origin detection {state})")


def pod_logs(pod: PodTemplate) -> Outcome:
    v = Verdict("pod_logs")
    gate = pod.sidecar or pod.agent
    enabled = _bad_bool(v, pod.agent, "DD_LOGS_ENABLED")
    if not enabled and not bool_setting(gate, "DD_LOGS_ENABLED")[0]:
        if v.issues:
            return v.outcome("")
        return Outcome(
            Status.SKIPPED, Reason.NOT_ENABLED, "log collection is off (DD_LOGS_ENABLED)"
        )
    for c, _ in _needers(pod, ()):
        path = c.setting("SELFCHECK_POD_LOGS_DIR") if c.role == SIDECAR else None
        path = path or "/var/log/pods"
        if node_file(c, path) != "/var/log/pods":
            v.add(Status.FAILED, Reason.ENOENT, c.name, f"{path} is not the node's /var/log/pods")
        elif c.uid not in (0, None) and not pod.supplemental_groups:
            v.add(
                Status.FAILED,
                Reason.EACCES,
                c.name,
                f"runs as UID {c.uid}: pod logs are root-owned (datadog-agent#6442)",
            )
    return v.outcome("the node's /var/log/pods is mounted and readable by the Agent's identity")


def parse_port(raw: str | None, default: int) -> int | None:
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    return int(text) if text.isdigit() and 1 <= int(text) <= 65535 else None


def agent_health(pod: PodTemplate) -> Outcome:
    v = Verdict("agent_health")
    agent = pod.agent
    port = parse_port(agent.setting("DD_HEALTH_PORT"), 5555)
    if port is None:
        v.add(Status.DEGRADED, Reason.BAD_VALUE, agent.name, "DD_HEALTH_PORT is not a port number")
        v.fixes[Reason.BAD_VALUE] = bad_value_fix("DD_HEALTH_PORT", "port")
        return v.outcome("")
    if pod.sidecar is not None:
        asked = parse_port(pod.sidecar.setting("DD_HEALTH_PORT"), 5555)
        if asked != port:
            v.add(
                Status.FAILED,
                Reason.ECONNREFUSED,
                pod.sidecar.name,
                f"asks the Agent's health on port {asked}, the Agent serves it on {port}",
            )
    for kind in ("livenessProbe", "readinessProbe"):
        probe = agent.raw.get(kind)
        get = probe.get("httpGet") if isinstance(probe, dict) else None
        if isinstance(get, dict) and get.get("port") not in (port, str(port)):
            v.note(agent.name, f"{kind} uses port {get.get('port')}, DD_HEALTH_PORT is {port}")
    asker = ", where the sidecar asks" if pod.sidecar is not None else ""
    return v.outcome(f"the Agent serves its health on 127.0.0.1:{port}{asker}")
