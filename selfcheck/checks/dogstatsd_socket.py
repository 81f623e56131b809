"""``dogstatsd_socket``: the DogStatsD unix socket (dsdsocket mount, ``/var/run/datadog``).

Applications in other pods send their custom metrics to this socket; when it is missing,
stale or not writable they drop metrics silently (DogStatsD clients never block or
raise). So the check does what a client does: it sends one valid datagram, non-blocking,
and classifies what the kernel says. When the Agent's expvar endpoint answers, its
``dogstatsd-uds`` counters are published too: the Agent's own view of the same socket.
"""

from __future__ import annotations

import stat
from dataclasses import replace
from typing import Any

from selfcheck import delivery
from selfcheck.checks._common import Judge, ownership
from selfcheck.checks._sockets import BUDGET_CEILING, STALE_SOCKET_HINT, not_shared
from selfcheck.config import SOCKET, UDP, Config
from selfcheck.context import CheckContext
from selfcheck.host.expvar import read_uds_vars
from selfcheck.host.files import describe
from selfcheck.host.receipt import heartbeat
from selfcheck.host.sockets import (
    Deadline,
    mode_octal,
    send_datagram,
    stat_socket,
)
from selfcheck.model import Outcome, Reason, Status, ok
from selfcheck.registry import CheckSpec, register

AGENT_MODE = "0722"
"""The Agent chmods its DogStatsD socket to 0722 so any UID may write (uds_common.go)."""

UDS_COUNTERS = {
    "Packets": "uds_packets",
    "OriginDetectionErrors": "uds_origin_detection_errors",
    "PacketReadingErrors": "uds_packet_reading_errors",
}

REMEDIATIONS = {
    Reason.ENOENT: (
        "Mount the host's /var/run/datadog read-write at /var/run/datadog in this container "
        "and the Agent's (the chart's dsdsocket volume, hostPath type DirectoryOrCreate; Helm "
        "datadog.dogstatsd.useSocketVolume=true) and make DD_DOGSTATSD_SOCKET the path the "
        "Agent listens on (Helm datadog.dogstatsd.socketPath, default "
        "/var/run/datadog/dsd.socket). If the directory is there but the file is not, the "
        "Agent's DogStatsD socket listener is off or the Agent has not started."
    ),
    Reason.NOT_SOCKET: (
        "The path is not the Agent's datagram socket: a file or directory left on the "
        "hostPath, or a stream socket (the APM socket?). Delete it on the node (the Agent "
        "recreates its socket on start) and check that DD_DOGSTATSD_SOCKET "
        "(datadog.dogstatsd.socketPath) and DD_APM_RECEIVER_SOCKET (datadog.apm.socketPath) "
        "are different paths."
    ),
    Reason.EACCES: (
        "This user may not write to the socket. The Agent makes it mode 0722 so that any "
        "UID can send; keep that mode (nothing on the node should chmod it), or run with the "
        "socket's group in spec.securityContext.supplementalGroups. Also check that no "
        "SELinux label (securityContext.seLinuxOptions) or AppArmor profile denies it."
    ),
    Reason.ECONNREFUSED: (
        "The socket file exists but nothing listens on it: a stale file from an Agent that "
        "is gone, or an Agent listening elsewhere. Check that the Agent container is running "
        "and that it and this container mount the same dsdsocket volume (hostPath "
        "/var/run/datadog) with the same DD_DOGSTATSD_SOCKET; a restarting Agent recreates "
        "the file."
    ),
    Reason.EAGAIN: (
        "The Agent's receive queue is full, so clients' packets are being dropped: DogStatsD "
        "reads too slowly. Give the agent container more CPU (Helm "
        "agents.containers.agent.resources), raise its receive buffer (DD_DOGSTATSD_SO_RCVBUF "
        "in agents.containers.agent.env) and the node's net.unix.max_dgram_qlen sysctl, and "
        "look at the Agent's dogstatsd.uds_* telemetry."
    ),
    Reason.NOT_SHARED: (
        "The Agent binds its DogStatsD socket in a directory only its own container sees (an "
        "emptyDir, a tmpfs or its image), so application pods, which mount the node's "
        "/var/run/datadog, cannot reach it. Mount the node's directory there: the chart's "
        "dsdsocket volume (hostPath /var/run/datadog, type DirectoryOrCreate, at "
        "/var/run/datadog; Helm datadog.dogstatsd.useSocketVolume: true, the default); with "
        "the Operator set spec.features.dogstatsd.unixDomainSocketConfig.enabled: true, which "
        "makes dsdsocket that hostPath; on GKE Autopilot enable the Datadog CSI driver. To keep "
        "the socket private and give applications UDP instead, open the UDP port to other pods: "
        "DD_DOGSTATSD_NON_LOCAL_TRAFFIC=true (Helm datadog.dogstatsd.nonLocalTraffic, Operator "
        "spec.features.dogstatsd.nonLocalTraffic)."
    ),
    Reason.IO_ERROR: (
        "Sending failed for another reason: run `ls -l` on the path from inside the pod and "
        "compare with the Agent container's DD_DOGSTATSD_SOCKET."
    ),
}

MODE_FIX = (
    "Clients in other pods run as other users and need write permission on the socket: the "
    "Agent creates it with mode 0722 (chmod after bind). Do not chmod or chown it from an init "
    "container or the node, keep the dsdsocket volume (hostPath /var/run/datadog) shared "
    "as the chart mounts it, and restart the Agent to recreate the socket."
)

HINTS = {
    Reason.ECONNREFUSED: STALE_SOCKET_HINT,
    Reason.EAGAIN: "the receiver's queue is full (packets are being dropped)",
    Reason.NOT_SOCKET: "DogStatsD needs a datagram (unixgram) socket",
}

JUDGE = Judge(
    REMEDIATIONS,
    HINTS,
    # A full queue means the Agent is there and behind: degraded, not a reason to go unready.
    {Reason.EAGAIN: Status.DEGRADED},
)


def run(ctx: CheckContext) -> Outcome:
    """``path`` as the viewed container names it; ``opened`` where this process reaches it."""
    config = ctx.config
    path, opened = config.dogstatsd_socket, ctx.host.at(config.dogstatsd_socket)
    deadline = Deadline(ctx.budget(BUDGET_CEILING))
    details: dict[str, Any] = {"path": str(path), "mode_expected": AGENT_MODE}
    details["transport"] = config.dogstatsd_transport
    # The last cycle's service checks (docs/datadog.md), shown whatever the socket says now;
    # over UDP they go to the port and ``dogstatsd_udp`` shows them.
    delivered, figures, findings = (
        delivery.report(config) if config.dogstatsd_transport == SOCKET else ({}, {}, ())
    )
    details.update(delivered)
    extra: dict[str, Any] = {"details": details, "figures": figures, "findings": findings}
    try:
        st = stat_socket(opened)
    except OSError as error:
        return JUDGE.failure(error, path, "find the DogStatsD socket", **extra)
    mode = mode_octal(st)
    details.update(mode=mode, owner=ownership(st), mode_matches_agent=mode == AGENT_MODE)
    payload = heartbeat(config.heartbeat_metric) if config.dogstatsd_mode == "send" else None
    try:
        sent = send_datagram(opened, payload)
    except OSError as error:
        return JUDGE.failure(error, path, "send a DogStatsD datagram to the socket", st, **extra)
    details["sent_bytes"] = sent
    figures.update(_uds_counters(ctx, deadline, details))
    fix = REMEDIATIONS[Reason.NOT_SHARED]
    private = not_shared(ctx, str(path), "DogStatsD socket", fix, details)
    if private is not None and config.udp_offered and config.dogstatsd_transport == SOCKET:
        return _internal(str(path), config, extra)
    if private is not None:
        return replace(private, figures=figures, findings=findings)
    message = _message(path, mode, config, sent)
    if not st.st_mode & stat.S_IWOTH:
        return Outcome(
            Status.DEGRADED,
            Reason.EACCES,
            f"{message}: other users cannot write to it, so non-root clients get EACCES "
            "and their metrics are dropped",
            MODE_FIX,
            **extra,
        )
    return ok(message, **extra)


def _internal(path: str, config: Config, extra: dict[str, Any]) -> Outcome:
    """A socket in the Agent's private directory while its UDP port takes other pods'
    traffic: the chart's ``datadog.dogstatsd.useSocketVolume: false``, which keeps
    ``DD_DOGSTATSD_SOCKET`` for the Agent's own containers (helm-charts PR #300) and offers
    applications UDP. Not a lost capability: ``dogstatsd_udp`` judges what they use."""
    return Outcome(
        Status.SKIPPED,
        Reason.NOT_ENABLED,
        f"{path} serves only the Agent's own pod (it is in a private directory: Helm "
        "datadog.dogstatsd.useSocketVolume: false keeps DD_DOGSTATSD_SOCKET for the Agent's "
        "own containers); applications send over "
        f"UDP port {config.dogstatsd_port} (DD_DOGSTATSD_NON_LOCAL_TRAFFIC true), judged by "
        "dogstatsd_udp",
        **extra,
    )


def _unused(config: Config) -> str:
    if config.dogstatsd_transport != UDP:
        return ""
    return (
        "DD_DOGSTATSD_SOCKET is not set in the Agent's environment: the install offers "
        f"applications UDP port {config.dogstatsd_port} instead (judged by dogstatsd_udp)"
    )


def _message(path: object, mode: str, config: Config, sent: int) -> str:
    did = (
        f"sent a {sent}-byte {config.heartbeat_metric} counter"
        if config.dogstatsd_mode == "send"
        else "connected (SELFCHECK_DOGSTATSD_MODE=connect, nothing sent)"
    )
    note = "" if mode == AGENT_MODE else f", not the Agent's {AGENT_MODE}"
    return f"{path}: {did}; mode {mode}{note}"


def _uds_counters(
    ctx: CheckContext, deadline: Deadline, details: dict[str, Any]
) -> dict[str, float]:
    """The Agent's ``dogstatsd-uds`` expvar counters, from the first expvar port that answers
    (DD_EXPVAR_PORT, else the Agent's 5000, then the chart's 6000), read by the same capped
    reader as origin detection's receipt. The Agent binds it to 127.0.0.1 only
    (DataDog/datadog-agent comp/agent/expvarserver), so from another network namespace (node
    mode) it cannot be read at all."""
    config = ctx.config
    unreachable = ctx.host.eyes.loopback_unknown()
    if unreachable:
        details["expvar"] = f"not read: {unreachable}"
        return {}
    misses: list[str] = []
    for port in config.expvar_ports:
        url = f"http://127.0.0.1:{port}/debug/vars"
        try:
            found = read_uds_vars(port, deadline)
        except OSError as error:
            misses.append(describe(error, url))
            continue
        if found.counters is None:
            why = "truncated before" if found.truncated else "without"
            details["expvar"] = f"{url}: HTTP {found.status}, {why} a dogstatsd-uds map"
            return {}
        details["expvar"] = url
        details["dogstatsd_uds"] = {
            k: found.counters[k] for k in UDS_COUNTERS if k in found.counters
        }
        return {
            figure: float(found.counters[key])
            for key, figure in UDS_COUNTERS.items()
            if key in found.counters
        }
    details["expvar"] = f"not read: {'; '.join(misses)}"
    return {}


SPEC = register(
    CheckSpec(
        id="dogstatsd_socket",
        title="DogStatsD unix socket (dsdsocket mount)",
        run=run,
        proves=(
            "DD_DOGSTATSD_SOCKET is a datagram socket with a live listener that this user can "
            "write to: one DogStatsD counter is sent to it without blocking. Its mode is "
            "compared with the Agent's 0722, and the Agent's dogstatsd-uds expvar counters "
            "are read when 127.0.0.1:$DD_EXPVAR_PORT answers. Under selfcheck serve it also "
            "reports the last delivery of the checks' service checks and the Agent's receipt "
            "of them (dogstatsd ServiceCheckPackets and ServiceCheckParseErrors)."
        ),
        why=(
            "Applications send custom metrics to this socket and never see an error when it "
            "is missing, stale or full: their metrics are simply lost. The Agent's own health "
            "endpoints do not look at it (comp/core/healthprobe)."
        ),
        remediations=REMEDIATIONS,
        required_by_default=lambda config: config.dogstatsd_transport == SOCKET,
        required_because=(
            "required: DD_DOGSTATSD_SOCKET is set (the chart and the Operator set it when "
            "DogStatsD over UDS is on, the default)"
        ),
        unused=_unused,
        figures={
            "uds_packets": "Packets the Agent's DogStatsD read from its unix socket (expvar).",
            "uds_origin_detection_errors": (
                "Packets whose sender the Agent could not map to a container (expvar)."
            ),
            "uds_packet_reading_errors": "Errors the Agent hit reading its unix socket (expvar).",
            **delivery.FIGURES,
        },
        findings=delivery.FINDINGS,
    )
)
