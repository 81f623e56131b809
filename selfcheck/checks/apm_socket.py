"""``apm_socket``: the trace-agent's unix socket (``DD_APM_RECEIVER_SOCKET``).

Tracers in other pods send spans to this socket and ask it ``GET /info`` to learn which
endpoints and features the trace-agent has; that is the request made here, over the
socket with ``http.client``, so the answer proves both the mount and a live trace-agent.
"""

from __future__ import annotations

from typing import Any

from selfcheck.checks._common import Judge, ownership
from selfcheck.checks._sockets import BUDGET_CEILING, STALE_SOCKET_HINT, not_shared
from selfcheck.context import CheckContext
from selfcheck.host.sockets import (
    HttpReply,
    ProtocolViolationError,
    http_get,
    mode_octal,
    stat_socket,
)
from selfcheck.model import Outcome, Reason, ok
from selfcheck.registry import CheckSpec, register

REMEDIATIONS = {
    Reason.ENOENT: (
        "Mount the host directory of the APM socket into this container and the Agent's "
        "(the chart's dsdsocket volume, hostPath /var/run/datadog, or its apmsocket volume "
        "when datadog.apm.socketPath is in another directory), keep the trace-agent's socket "
        "on (Helm datadog.apm.socketEnabled=true) and set DD_APM_RECEIVER_SOCKET to "
        "datadog.apm.socketPath (default /var/run/datadog/apm.socket)."
    ),
    Reason.NOT_SOCKET: (
        "The path is not the trace-agent's stream socket: a file or directory left on the "
        "hostPath, or the DogStatsD datagram socket. Delete it on the node and check that "
        "DD_APM_RECEIVER_SOCKET (datadog.apm.socketPath) and DD_DOGSTATSD_SOCKET "
        "(datadog.dogstatsd.socketPath) are different paths."
    ),
    Reason.EACCES: (
        "This user may not connect: the trace-agent makes the socket mode 0722 so any UID "
        "can send traces; keep that mode, or run with the socket's group in "
        "spec.securityContext.supplementalGroups, and check SELinux (securityContext."
        "seLinuxOptions) or AppArmor."
    ),
    Reason.ECONNREFUSED: (
        "The socket file exists but nothing listens: a stale file, or the trace-agent "
        "container is not running. Check the trace-agent container in the Agent pod (Helm "
        "datadog.apm.socketEnabled, agents.containers.traceAgent) and that both containers "
        "mount the same host directory with the same DD_APM_RECEIVER_SOCKET."
    ),
    Reason.TIMEOUT: (
        "The trace-agent accepted the connection but did not answer GET /info in time: it is "
        "overloaded or hung. Look at the trace-agent container's logs and CPU limits (Helm "
        "agents.containers.traceAgent.resources); restarting the pod recreates the socket."
    ),
    Reason.PROTOCOL_ERROR: (
        "Something answers on the socket, but not the trace-agent's HTTP API: check that "
        "DD_APM_RECEIVER_SOCKET points at the trace-agent's socket (datadog.apm.socketPath), "
        "not at another service's."
    ),
    Reason.NOT_SHARED: (
        "The trace-agent binds its socket in a directory only the Agent's pod sees (an "
        "emptyDir, a tmpfs or its image), so tracers in application pods cannot reach it. "
        "Mount the node's directory there: the chart's apmsocket volume (hostPath of the "
        "directory of Helm datadog.apm.socketPath, default /var/run/datadog/apm.socket, with "
        "datadog.apm.socketEnabled: true); with the Operator "
        "spec.features.apm.unixDomainSocketConfig.enabled: true."
    ),
    Reason.IO_ERROR: (
        "Connecting failed for another reason: run `ls -l` on the path from inside the pod "
        "and compare with the trace-agent container's DD_APM_RECEIVER_SOCKET."
    ),
}

HINTS = {
    Reason.ECONNREFUSED: STALE_SOCKET_HINT,
    Reason.NOT_SOCKET: "the APM receiver is a stream socket speaking HTTP",
}
JUDGE = Judge(REMEDIATIONS, HINTS)
INFO_URL = "http://localhost/info"


def run(ctx: CheckContext) -> Outcome:
    config = ctx.config
    path, opened = config.apm_socket, ctx.host.at(config.apm_socket)
    details: dict[str, Any] = {"path": str(path)}
    try:
        st = stat_socket(opened)
    except OSError as error:
        return JUDGE.failure(error, path, "find the APM socket", details=details)
    details.update(mode=mode_octal(st), owner=ownership(st))
    try:
        reply = http_get(INFO_URL, ctx.budget(BUDGET_CEILING), unix_socket=opened)
        info = _info(reply)
    except OSError as error:
        return JUDGE.failure(error, path, "GET /info from the trace-agent", st, details=details)
    details.update(info)
    fix = REMEDIATIONS[Reason.NOT_SHARED]
    private = not_shared(ctx, str(path), "APM socket", fix, details)
    if private is not None:
        return private
    return ok(
        f"{path}: trace-agent {info['trace_agent_version']} answered GET /info", details=details
    )


def _info(reply: HttpReply) -> dict[str, Any]:
    """The facts worth showing from the trace-agent's ``/info`` (pkg/trace/api/info.go)."""
    if reply.status != 200:
        raise ProtocolViolationError(f"GET /info answered HTTP {reply.status}, not 200")
    body = reply.json()
    if not isinstance(body, dict) or not isinstance(body.get("version"), str):
        raise ProtocolViolationError("GET /info answered JSON without a version: not a trace-agent")
    version: str = body["version"]
    endpoints = body.get("endpoints")
    return {
        "trace_agent_version": version[:64],
        "git_commit": str(body.get("git_commit", ""))[:64],
        "endpoints": len(endpoints) if isinstance(endpoints, list) else 0,
    }


SPEC = register(
    CheckSpec(
        id="apm_socket",
        title="APM (trace-agent) unix socket",
        run=run,
        proves=(
            "DD_APM_RECEIVER_SOCKET is a stream socket this user can connect to, and the "
            "trace-agent behind it answers GET /info with its version."
        ),
        why=(
            "Tracers send spans to this socket; when it is missing, stale or hung they drop "
            "traces or fall back to TCP without telling anyone. The trace-agent also reads "
            "the sender's PID from it to tag spans with their container "
            "(pkg/trace/api/container_linux.go)."
        ),
        remediations=REMEDIATIONS,
        required_by_default=lambda config: config.apm_socket_configured,
        unused=lambda config: (
            ""
            if config.apm_socket_configured
            else "DD_APM_RECEIVER_SOCKET is not set: APM over a unix socket is not configured"
        ),
        required_because="required: DD_APM_RECEIVER_SOCKET is set, so tracers use the socket",
    )
)
