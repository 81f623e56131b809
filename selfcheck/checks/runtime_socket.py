"""``runtime_socket``: the container runtime's socket (runtimesocketdir, ``/host/var/run``).

The Agent finds its runtime the way ``pkg/config/env/environment_containers.go`` does
(and socket.go): ``DOCKER_HOST`` or the Docker defaults, ``DD_CRI_SOCKET_PATH`` or the
containerd and CRI-O defaults, each with and without ``/host``; a candidate counts when
``stat`` says socket and a connect succeeds within 500 ms. Without it containers carry no
tags and the container checks stay empty, while the Agent only logs "socket not reachable
(permissions?)". This check walks the same candidates and then speaks the protocol: Docker
``GET /_ping`` and ``/version``, CRI ``RuntimeService/Version`` for containerd and CRI-O.
"""

from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from selfcheck.checks._common import Judge
from selfcheck.checks._sockets import BUDGET_CEILING
from selfcheck.config import Config, unix_socket_file
from selfcheck.context import CheckContext
from selfcheck.host import cri, runtimes
from selfcheck.host.files import describe
from selfcheck.host.root import Root
from selfcheck.host.runtimes import cri_runtime
from selfcheck.host.sockets import (
    CONNECT_TIMEOUT,
    Deadline,
    ProtocolViolationError,
    http_get,
    probe_stream,
    stat_socket,
)
from selfcheck.model import Outcome, Reason, Status, ok, skipped
from selfcheck.registry import CheckSpec, register

DOCKER_DEFAULTS = ("/var/run/docker.sock", "/host/var/run/docker.sock")
CRI_DEFAULTS = (
    "/var/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/host/var/run/containerd/containerd.sock",
    "/host/var/run/crio/crio.sock",
)

REMEDIATIONS = {
    Reason.ENOENT: (
        "Mount the host's runtime socket directory read-only at /host/var/run (the chart's "
        "runtimesocketdir volume, hostPath /var/run; with Helm datadog.criSocketPath set, "
        "/var/run/containerd at /host/var/run/containerd), and point the Agent at the socket "
        "when it is not at a default path: Helm datadog.criSocketPath (DD_CRI_SOCKET_PATH) or "
        "datadog.dockerSocketPath (DOCKER_HOST)."
    ),
    Reason.NOT_SOCKET: (
        "The runtime path is not a socket (a directory or file on the hostPath, often left "
        "by a hostPath of type DirectoryOrCreate made before the runtime started): set Helm "
        "datadog.criSocketPath / datadog.dockerSocketPath to the runtime's real socket."
    ),
    Reason.EACCES: (
        "This user may not connect to the runtime socket (usually mode 0660, owned by root "
        "and a runtime group). A non-root Agent needs the socket's group id in the pod's "
        "spec.securityContext.supplementalGroups; fsGroup does not apply to hostPath volumes "
        "(datadog-agent#17713). A root Agent denied access points at SELinux "
        "(securityContext.seLinuxOptions) or AppArmor."
    ),
    Reason.ECONNREFUSED: (
        "The socket file exists but the runtime is not listening: the runtime on the node is "
        "stopped or restarted under another path, leaving a stale file. Check the runtime "
        "service on the node and that the runtimesocketdir volume mounts the directory (not "
        "the socket file, which goes stale when the runtime recreates it)."
    ),
    Reason.TIMEOUT: (
        "The runtime accepted the connection but did not answer in time: it is overloaded "
        "or hung (the kubelet will be struggling too). Check the runtime service on the node."
    ),
    Reason.PROTOCOL_ERROR: (
        "Something answers on the socket but not in the runtime's API: a Docker socket must "
        "answer GET /_ping, a containerd or CRI-O socket the CRI RuntimeService/Version call "
        "(containerd's CRI plugin must be enabled, not in disabled_plugins). Point Helm "
        "datadog.criSocketPath or datadog.dockerSocketPath at the runtime the kubelet uses."
    ),
    Reason.IO_ERROR: (
        "Reaching the runtime failed for another reason: run `ls -l` on the paths in the "
        "message from inside the pod."
    ),
}
HINTS = {
    Reason.ECONNREFUSED: "a stale socket file: the runtime is not listening",
    Reason.NOT_SOCKET: "the runtime's API is a stream socket",
}
JUDGE = Judge(REMEDIATIONS, HINTS)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One socket path the Agent would try, with where it came from."""

    path: str
    runtime: str
    source: str
    opened: str = ""
    """Where this process reaches ``path`` (inside the Agent's root in its view)."""

    @property
    def reached(self) -> Path:
        return Path(self.opened or self.path)

    @property
    def explicit(self) -> bool:
        return self.source != "default"

    @property
    def protocol(self) -> str:
        return "docker" if self.runtime == "docker" else "cri"


@dataclass(frozen=True, slots=True)
class Found:
    """A candidate that answered: which runtime, which version."""

    candidate: Candidate
    runtime: str
    version: str
    extra: dict[str, str]


def candidates(
    config: Config,
    docker_defaults: tuple[str, ...] = DOCKER_DEFAULTS,
    cri_defaults: tuple[str, ...] = CRI_DEFAULTS,
) -> tuple[list[Candidate], list[str]]:
    """The sockets to try in order (explicit settings first), and settings not checkable."""
    explicit: list[Candidate] = []
    defaults: list[Candidate] = []
    unsupported: list[str] = []
    if config.docker_host:
        docker_file = unix_socket_file(config.docker_host)
        if docker_file:
            explicit.append(Candidate(docker_file, "docker", "DOCKER_HOST"))
        else:
            unsupported.append(f"DOCKER_HOST={config.docker_host}")
    else:
        defaults += [Candidate(p, "docker", "default") for p in docker_defaults]
    if config.cri_socket_path:
        path = unix_socket_file(config.cri_socket_path) or config.cri_socket_path
        explicit.append(Candidate(path, cri_runtime(path), "DD_CRI_SOCKET_PATH"))
    else:
        defaults += [Candidate(p, cri_runtime(p), "default") for p in cri_defaults]
    return explicit + defaults, unsupported


def probe(candidate: Candidate, deadline: Deadline) -> Found:
    """``stat``, connect within 500 ms, then the runtime's own version call."""
    stat_socket(candidate.reached)
    probe_stream(candidate.reached, deadline.left(CONNECT_TIMEOUT))
    if candidate.protocol == "docker":
        return _docker(candidate, deadline)
    answer = cri.version(candidate.reached, deadline)
    if not answer.runtime_name:
        raise ProtocolViolationError("the CRI Version answer names no runtime")
    return Found(
        candidate,
        answer.runtime_name[:64],
        answer.runtime_version[:64],
        {"runtime_api_version": answer.runtime_api_version},
    )


def _docker(candidate: Candidate, deadline: Deadline) -> Found:
    ping = http_get("http://localhost/_ping", deadline, unix_socket=candidate.reached)
    if ping.status != 200 or ping.body.strip() != b"OK":
        raise ProtocolViolationError(f"GET /_ping answered HTTP {ping.status}, not 200 OK")
    reply = http_get("http://localhost/version", deadline, unix_socket=candidate.reached)
    body = reply.json()
    version = body.get("Version") if isinstance(body, dict) else None
    if reply.status != 200 or not isinstance(version, str):
        raise ProtocolViolationError(f"GET /version answered HTTP {reply.status} without a Version")
    api = body.get("ApiVersion") if isinstance(body, dict) else None
    return Found(candidate, "docker", version[:64], {"api_version": str(api or "")[:16]})


TAKEN_ON_ERROR = frozenset(
    {Reason.ECONNREFUSED, Reason.TIMEOUT, Reason.PROTOCOL_ERROR, Reason.IO_ERROR}
)
"""Failures after which the Agent still takes the socket: ``socket.IsAvailable`` refuses a
socket only when it is absent, not a socket, or its connect is denied
(pkg/util/system/socket/socket.go); a refused or slow connect counts as available."""


def run(ctx: CheckContext) -> Outcome:
    config = ctx.config
    deadline = Deadline(ctx.budget(BUDGET_CEILING))
    order, unsupported = candidates(config, DOCKER_DEFAULTS, CRI_DEFAULTS)
    tried: list[dict[str, Any]] = []
    details: dict[str, Any] = {"candidates": tried}
    if unsupported:
        details["not_checked"] = unsupported
    failures: list[tuple[Candidate, OSError]] = []
    taken: dict[str, Candidate] = {}
    """The default the Agent takes for each API: the first that exists and may be connected."""
    found: Found | None = None
    for candidate in order:
        if found is not None and not candidate.explicit:
            break
        shadow = None if candidate.explicit else taken.get(candidate.protocol)
        try:
            result = probe(replace(candidate, opened=str(ctx.host.at(candidate.path))), deadline)
        except OSError as error:
            reason = JUDGE.reason(error)
            tried.append(_attempt(candidate, str(reason), describe(error)))
            if reason in TAKEN_ON_ERROR and not candidate.explicit:
                taken.setdefault(candidate.protocol, candidate)
            if candidate.explicit or reason is not Reason.ENOENT:
                failures.append((candidate, error))
            continue
        if shadow is not None:
            tried.append(
                _attempt(candidate, "shadowed", f"answers, but the Agent takes {shadow.path}")
            )
            details.setdefault("answering_but_not_taken", []).append(candidate.path)
            continue
        tried.append(_attempt(candidate, "ok", f"{result.runtime} {result.version}"))
        taken.setdefault(candidate.protocol, candidate)
        found = found or result
    outcome = _judge(found, failures, unsupported, details, ctx.host.root)
    if outcome.status is Status.FAILED:
        return _with_node_sockets(outcome, ctx, order, deadline)
    return outcome


def _attempt(candidate: Candidate, result: str, detail: str) -> dict[str, Any]:
    return {
        "path": candidate.path,
        "runtime": candidate.runtime,
        "source": candidate.source,
        "result": result,
        "detail": detail[:300],
    }


def _judge(
    found: Found | None,
    failures: list[tuple[Candidate, OSError]],
    unsupported: list[str],
    details: dict[str, Any],
    root: Root,
) -> Outcome:
    """Explicit settings must work; else the first answering default, degraded by broken ones."""
    node_info: dict[str, str] = {}
    if found is not None:
        node_info = {"runtime": found.runtime, "runtime_version": found.version}
        details.update(
            path=found.candidate.path,
            source=found.candidate.source,
            runtime=found.runtime,
            runtime_version=found.version,
            **found.extra,
        )
    explicit_failure = next(((c, e) for c, e in failures if c.explicit), None)
    if explicit_failure is not None:
        return _failure(*explicit_failure, details, root, node_info=node_info)
    if found is None and failures:
        return _failure(*failures[0], details, root)
    if found is None and unsupported:
        return skipped(
            Reason.NOT_APPLICABLE,
            f"{unsupported[0]} is not a unix socket and no other runtime socket exists; this "
            "check proves unix sockets only",
            details=details,
        )
    if found is None:
        paths = ", ".join(c["path"] for c in details["candidates"])
        absent = FileNotFoundError(errno.ENOENT, "no runtime socket at any of the Agent's paths")
        return _failure(None, absent, details, root, where=paths)
    message = f"{found.candidate.path}: {found.runtime} {found.version} answered"
    gap = runtime_gap(found.candidate.path, found.runtime)
    if gap:
        details["missed"] = gap
        message = f"{message}; {gap}"
    if failures:
        # The Agent's detectDocker / IsAvailable: a default that is not a socket or does not
        # answer is simply absent when another runtime does (pkg/config/env); only noted.
        details["ignored_defaults"] = [c.path for c, _ in failures]
        taken = [(c, r) for c, e in failures if (r := JUDGE.reason(e)) in TAKEN_ON_ERROR]
        if taken:
            details["agent_will"] = agent_does(taken[0][0], taken[0][1], details)
            message = f"{message}; of {taken[0][0].path}, {details['agent_will']}"
    return ok(message, details=details, node_info=node_info)


def _failure(
    candidate: Candidate | None,
    error: OSError,
    details: dict[str, Any],
    root: Root,
    *,
    where: str | None = None,
    node_info: dict[str, str] | None = None,
) -> Outcome:
    path = where or (candidate.path if candidate else "")
    what = "reach the container runtime"
    st = None
    if candidate is not None:
        what = f"reach the {candidate.runtime} socket from {candidate.source}"
        st = _stat_or_none(str(root.at(candidate.path)))
    failure = JUDGE.failure(error, path, what, st, details=details, node_info=node_info or {})
    if candidate is not None:
        will = agent_does(candidate, JUDGE.reason(error), details)
        details["agent_will"] = will
        failure = replace(failure, message=f"{failure.message}; {will}", details=details)
    links = [n for n in (_broken_host_link(root, c["path"]) for c in details["candidates"]) if n]
    if not links:
        return failure
    return replace(failure, message=f"{failure.message}; {links[0][0]}", remediation=links[0][1])


def agent_does(candidate: Candidate, reason: Reason, details: dict[str, Any]) -> str:
    """What the Agent does with this socket, which it shows at most in an INFO log line
    (pkg/config/env/environment_containers.go ``detectDocker``, ``checkCriSocket``)."""
    path, runtime = candidate.path, candidate.runtime
    if candidate.source == "DOCKER_HOST":
        return (
            "the Agent does not probe DOCKER_HOST: it turns its Docker checks on, and they "
            f"fail against {path} at every run"
        )
    if reason is Reason.EACCES:
        kind = "Docker" if candidate.protocol == "docker" else "cri"
        then = (
            "goes on to its next default path"
            if not candidate.explicit
            else f"runs without its {'CRI' if runtime == 'cri' else 'CRI and ' + runtime} checks"
        )
        return (
            f"the Agent only logs 'Agent found {kind} socket at: {path} but socket not "
            f"reachable (permissions?)' at INFO level and {then}"
        )
    if reason in TAKEN_ON_ERROR:
        further = "" if candidate.explicit else " and tries no later default"
        shadowed = details.get("answering_but_not_taken") or []
        never = f" (so it never uses {shadowed[0]}, which answers)" if shadowed else ""
        return (
            f"the Agent still counts {path} as available (it refuses a socket only when the "
            "connect is denied, pkg/util/system/socket/socket.go), takes it"
            f"{further}{never}, and its {runtime} checks fail against it with no log at startup"
        )
    if candidate.explicit:
        checks = "CRI" if runtime == "cri" else f"CRI and {runtime}"
        return f"the Agent logs nothing and runs without its {checks} checks"
    return ""


def runtime_gap(path: str, runtime: str) -> str:
    """What the Agent misses when the CRI socket's path names no runtime: it turns on the
    containerd or CRI-O check by the substring alone (environment_containers.go)."""
    if cri_runtime(path) != "cri":
        return ""
    feature = {"containerd": "containerd", "cri-o": "crio"}.get(runtime.lower(), "")
    text = (
        f"the Agent picks its checks by the socket path's name, and {path} names neither "
        "containerd nor crio: it runs the CRI check only and misses the "
        f"{feature or 'containerd or CRI-O'} check and collector (container metrics, events, "
        "images and their tags)"
    )
    if feature:
        text += (
            f"; the runtime answered as {runtime}: set DD_AUTOCONFIG_INCLUDE_FEATURES={feature} "
            "or point DD_CRI_SOCKET_PATH at a path that names it"
        )
    return text


def _with_node_sockets(
    outcome: Outcome, ctx: CheckContext, order: list[Candidate], deadline: Deadline
) -> Outcome:
    """The Agent found nothing it can use: the runtime sockets the known distributions keep,
    looked for in every node directory the Agent has mounted, and the setting for the one
    there (or the volume to add for one outside every mount)."""
    settings = [c.path for c in order if c.explicit]
    shadowed = set(outcome.details.get("answering_but_not_taken") or ())
    pids = ctx.host.host_pids()
    try:
        sightings = runtimes.search(
            ctx.host.root,
            settings,
            ctx.host.host_proc,
            [] if isinstance(pids, OSError) else pids,
            skip=[c.path for c in order if c.path not in shadowed],
            containerized=ctx.config.containerized,
            deadline=deadline,
        )
    except OSError:
        return outcome  # a hint that cannot be read leaves the Agent's own verdict as it is
    if not sightings:
        return outcome
    details = dict(outcome.details)
    details["node_sockets"] = [_sighting(s) for s in sightings]
    best = _best(sightings)
    misplaced = outcome.reason in (Reason.ENOENT, Reason.NOT_SOCKET)
    if best.result != "ok" and not misplaced:
        # The Agent's socket is where it looks but refuses (eacces, stale...): that fix stands.
        return replace(outcome, details=details)
    message = f"{outcome.message}; {node_socket_words(best)}"
    remediation = setting_fix(best) if best.result in ("ok", "unmounted") else outcome.remediation
    return replace(outcome, message=message, remediation=remediation, details=details)


def _best(sightings: list[runtimes.Sighting]) -> runtimes.Sighting:
    """An answering mounted socket first (the table's order prefers a path naming its
    runtime), then one outside every mount, then whatever is there."""
    for wanted in ("ok", "unmounted"):
        match = next((s for s in sightings if s.result == wanted), None)
        if match is not None:
            return match
    return sightings[0]


def _sighting(s: runtimes.Sighting) -> dict[str, Any]:
    return {
        "node_path": s.node_path,
        "agent_path": s.agent_path or "",
        "where": s.where,
        "result": s.result,
        "detail": s.detail[:300],
    }


def node_socket_words(s: runtimes.Sighting) -> str:
    """The sighting as the message names it."""
    if not s.mounted:
        return (
            f"the node has a runtime socket at {s.node_path} ({s.where}), outside every node "
            "directory the Agent mounts"
        )
    state = "answers" if s.result == "ok" else f"is there but fails ({s.result}: {s.detail})"
    return (
        f"the node's {s.node_path} ({s.where}) {state} at {s.agent_path} in the Agent's container"
    )


def setting_fix(s: runtimes.Sighting) -> str:
    """The one setting, for each install form, that points the Agent at ``s``."""
    node = s.node_path
    directory = posixpath.dirname(node)
    docker = s.api == "docker"
    helm = "datadog.dockerSocketPath" if docker else "datadog.criSocketPath"
    operator = "spec.global.dockerSocketPath" if docker else "spec.global.criSocketPath"
    env = "DOCKER_HOST=unix://" if docker else "DD_CRI_SOCKET_PATH="
    chart = (
        f"Helm {helm}={node} (the chart then mounts {directory} at /host{directory} and sets "
        f"{env}/host{node}); Operator {operator}={node} (the same mount and variable)"
    )
    if s.mounted:
        plain = f"a plain manifest: {env}{s.agent_path}, already inside the mounted directory"
        fix = f"Point the Agent at {node}: {chart}; {plain}."
    else:
        plain = (
            f"a plain manifest: a hostPath volume {directory} mounted read-only at "
            f"/host{directory}, and {env}/host{node}"
        )
        fix = f"Mount the directory of {node} and point the Agent at it: {chart}; {plain}."
    gap = "" if docker else runtime_gap(node, "")
    return f"{fix} Note: {gap}." if gap else fix


def _broken_host_link(root: Root, path: str) -> tuple[str, str] | None:
    """An absolute symlink under ``/host`` resolves in the container's root, not the node's:
    Bottlerocket's ``/run/dockershim.sock`` -> ``/run/containerd/containerd.sock`` reads as
    missing under ``/host/run`` (bottlerocket-os/bottlerocket#4074). The message and fix."""
    link = root.at(posixpath.dirname(path)) / posixpath.basename(path)
    if not path.startswith("/host/") or not link.is_symlink():
        return None
    try:
        target = str(link.readlink())
    except OSError:
        return None
    if not target.startswith("/") or root.at(target).exists():
        return None
    on_host = "/host" + target
    where = "exists" if root.at(on_host).exists() else "does not exist either"
    message = (
        f"{path} is a symlink to the absolute path {target}, which resolves in this "
        f"container's root instead of under /host ({on_host} {where})"
    )
    fix = (
        f"Point the Agent at the socket itself: DD_CRI_SOCKET_PATH={on_host} (Helm "
        f"datadog.criSocketPath={target}), and mount the directory that holds it (the "
        "runtimesocketdir volume) rather than the directory of the symlink."
    )
    return message, fix


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return stat_socket(path)
    except OSError:
        return None


SPEC = register(
    CheckSpec(
        id="runtime_socket",
        title="container runtime socket (runtimesocketdir mount)",
        run=run,
        proves=(
            "the runtime socket the Agent would pick (DOCKER_HOST, DD_CRI_SOCKET_PATH, else "
            "the Docker, containerd and CRI-O defaults with and without /host) is a socket, "
            "connects within 500 ms and answers its API: Docker GET /_ping and /version, CRI "
            "RuntimeService/Version for containerd and CRI-O. Publishes the runtime's name and "
            "version."
        ),
        why=(
            "The Agent tags every container metric, log and trace through the runtime; "
            "without the socket it only logs 'socket not reachable (permissions?)' and sends "
            "untagged data, and `agent diagnose` still reports success "
            "(pkg/diagnose/connectivity/metadata.go)."
        ),
        remediations=REMEDIATIONS,
        required_by_default=lambda config: True,
        required_because="required: the chart mounts the runtime socket directory by default",
    )
)
