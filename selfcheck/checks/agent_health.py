"""``agent_health``: the Agent's own readiness endpoint, ``127.0.0.1:$DD_HEALTH_PORT/ready``.

The sidecar shares the Agent pod's network namespace, so loopback reaches the same port
the kubelet probes. The Agent answers ``{"Healthy": [...], "Unhealthy": [...]}`` (500 when
any component is unhealthy); the unhealthy names say which part of the Agent is stuck. It
is optional: the Agent's health says nothing about the host access the other checks prove
(datadog-agent comp/core/healthprobe), and the kubelet already acts on it.
"""

from __future__ import annotations

from typing import Any

from selfcheck.checks._common import Judge
from selfcheck.checks._sockets import BUDGET_CEILING
from selfcheck.context import CheckContext
from selfcheck.host.sockets import HttpReply, ProtocolViolationError, http_get
from selfcheck.model import Outcome, Reason, Status, ok, skipped
from selfcheck.registry import CheckSpec, register

MAX_NAMES = 32
"""Component names kept in details; the Agent has a few dozen at most."""

REMEDIATIONS = {
    Reason.ECONNREFUSED: (
        "Nothing listens on the Agent's health port on the loopback selfcheck shares with "
        "the Agent: the agent container is not running (restarting, crash-looping) or "
        "listens on another port. "
        "Make DD_HEALTH_PORT here equal to the Agent's (Helm agents.containers.agent."
        "healthPort, default 5555) and look at the agent container's status and logs."
    ),
    Reason.TIMEOUT: (
        "The Agent accepted the connection but did not answer /ready in time: it is "
        "overloaded or hung. Check the agent container's CPU limits (Helm "
        "agents.containers.agent.resources) and its logs."
    ),
    Reason.UNHEALTHY: (
        "The Agent reports unhealthy components (named in the message): run `agent health` "
        "and `agent status` in the agent container and read its logs for those components; "
        "the kubelet will restart it if /live stays unhealthy."
    ),
    Reason.PROTOCOL_ERROR: (
        "Something answers on DD_HEALTH_PORT but not the Agent's health API: another "
        "container in the pod uses the port; set DD_HEALTH_PORT to the Agent's health port "
        "(Helm agents.containers.agent.healthPort)."
    ),
    Reason.IO_ERROR: (
        "Connecting to the health port failed for another reason (the errno is in the "
        "message): check that the agent container is running and that DD_HEALTH_PORT matches "
        "its health port (Helm agents.containers.agent.healthPort, default 5555)."
    ),
}
JUDGE = Judge(REMEDIATIONS)


def health_url(ctx: CheckContext) -> str:
    """The Agent binds its health server on every address (DataDog/datadog-agent
    comp/core/healthprobe/impl): on loopback from its own pod, at its pod's address from
    another (node mode)."""
    eyes = ctx.host.eyes
    host = "127.0.0.1" if eyes.shares_loopback or not eyes.agent_address else eyes.agent_address
    return f"http://{host}:{ctx.config.health_port}/ready"


def run(ctx: CheckContext) -> Outcome:
    config = ctx.config
    if not config.health_port:
        return skipped(
            Reason.NOT_ENABLED,
            "DD_HEALTH_PORT is 0: the Agent runs no health server (the Agent's own default; "
            "the chart and the Operator set 5555), so there is nothing to ask",
        )
    unknown = ctx.host.eyes.loopback_unknown() if ctx.host.eyes.shares_loopback is None else None
    if unknown:
        return skipped(Reason.NOT_APPLICABLE, f"the Agent's health server was not asked: {unknown}")
    url = health_url(ctx)
    try:
        reply = http_get(url, ctx.budget(BUDGET_CEILING))
        healthy, unhealthy = parse_health(reply)
    except OSError as error:
        return JUDGE.failure(error, url, "ask the Agent for its health", details={"url": url})
    details: dict[str, Any] = {
        "url": url,
        "http_status": reply.status,
        "healthy": healthy[:MAX_NAMES],
        "unhealthy": unhealthy[:MAX_NAMES],
    }
    figures = {
        "healthy_components": float(len(healthy)),
        "unhealthy_components": float(len(unhealthy)),
    }
    if unhealthy or reply.status != 200:
        names = ", ".join(unhealthy[:MAX_NAMES]) or "none named"
        return JUDGE.outcome(
            Status.FAILED,
            Reason.UNHEALTHY,
            f"{url}: HTTP {reply.status}, {len(unhealthy)} unhealthy Agent component(s): {names}",
            details=details,
            figures=figures,
        )
    return ok(f"{url}: {len(healthy)} Agent components healthy", details=details, figures=figures)


def parse_health(reply: HttpReply) -> tuple[list[str], list[str]]:
    """The ``Healthy`` and ``Unhealthy`` lists of pkg/status/health's JSON answer."""
    if reply.status not in (200, 500):
        raise ProtocolViolationError(f"/ready answered HTTP {reply.status}, not 200 or 500")
    body = reply.json()
    if not isinstance(body, dict) or not {"Healthy", "Unhealthy"} & set(body):
        raise ProtocolViolationError("/ready answered JSON without Healthy/Unhealthy lists")
    return _names(body.get("Healthy")), _names(body.get("Unhealthy"))


def _names(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtocolViolationError("Healthy/Unhealthy is not a list of component names")
    return sorted(str(name)[:128] for name in value)


SPEC = register(
    CheckSpec(
        id="agent_health",
        title="the Agent's own health endpoint",
        run=run,
        proves=(
            "the Agent answers GET 127.0.0.1:$DD_HEALTH_PORT/ready in this pod, and lists no "
            "unhealthy component."
        ),
        why=(
            "Puts the Agent's own view next to the host checks: a healthy Agent with a failed "
            "host check is the silent case this sidecar exists for; an unhealthy Agent is "
            "named here with its stuck components."
        ),
        remediations=REMEDIATIONS,
        required_because="optional: the kubelet already probes the Agent's health port",
        figures={
            "healthy_components": "Agent components reporting healthy on /ready.",
            "unhealthy_components": "Agent components reporting unhealthy on /ready.",
        },
    )
)
