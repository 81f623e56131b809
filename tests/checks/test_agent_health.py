"""agent_health against a stand-in of the Agent's health port.

The Agent cannot run here, so ``/ready`` is served by a stand-in (``tests/support/
standins.py``) that answers like comp/core/healthprobe: ``{"Healthy": [...], "Unhealthy":
[...]}``, HTTP 500 when anything is unhealthy. Refused and wedged ports are real sockets.
"""

from __future__ import annotations

from selfcheck.checks import agent_health
from selfcheck.context import CheckContext
from selfcheck.model import Reason, Status
from tests.support.configs import make_config
from tests.support.run import selfcheck
from tests.support.standins import AgentHTTPStandIn, WedgedListener, free_port


def test_healthy_agent_lists_its_components() -> None:
    with AgentHTTPStandIn(healthy=["forwarder", "aggregator"]) as agent:
        outcome = agent_health.run(CheckContext.of(make_config(DD_HEALTH_PORT=agent.port)))
    assert (outcome.status, outcome.reason) == (Status.OK, Reason.OK)
    assert outcome.details["healthy"] == ["aggregator", "forwarder"]
    assert outcome.figures == {"healthy_components": 2.0, "unhealthy_components": 0.0}


def test_unhealthy_components_are_named() -> None:
    with AgentHTTPStandIn(
        healthy=["aggregator"], unhealthy=["forwarder", "dogstatsd-main"]
    ) as agent:
        outcome = agent_health.run(CheckContext.of(make_config(DD_HEALTH_PORT=agent.port)))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.UNHEALTHY)
    assert "HTTP 500" in outcome.message
    assert "dogstatsd-main, forwarder" in outcome.message
    assert outcome.details["unhealthy"] == ["dogstatsd-main", "forwarder"]
    assert outcome.figures["unhealthy_components"] == 2.0
    assert "agent health" in outcome.remediation


def test_nothing_listening_is_econnrefused() -> None:
    with free_port() as port:
        outcome = agent_health.run(CheckContext.of(make_config(DD_HEALTH_PORT=port)))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ECONNREFUSED)
    assert f"http://127.0.0.1:{port}/ready: Connection refused (ECONNREFUSED)" in outcome.message
    assert "DD_HEALTH_PORT" in outcome.remediation


def test_a_port_that_never_answers_times_out_in_budget() -> None:
    with WedgedListener() as wedged:
        outcome = agent_health.run(
            CheckContext.of(make_config(DD_HEALTH_PORT=wedged.port, SELFCHECK_CHECK_TIMEOUT="0.4"))
        )
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.TIMEOUT)
    assert "no answer within 0.3 s" in outcome.message


def test_another_service_on_the_port_is_a_protocol_error() -> None:
    with AgentHTTPStandIn() as agent:
        agent.server.routes = {"/ready": (200, ["not", "the", "agent"])}
        outcome = agent_health.run(CheckContext.of(make_config(DD_HEALTH_PORT=agent.port)))
        assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.PROTOCOL_ERROR)
        agent.server.routes = {}
        outcome = agent_health.run(CheckContext.of(make_config(DD_HEALTH_PORT=agent.port)))
        assert outcome.reason is Reason.PROTOCOL_ERROR
        assert "HTTP 404" in outcome.message


def test_optional_so_an_unhealthy_agent_is_exit_1() -> None:
    assert not agent_health.SPEC.required_by_default(make_config())
    with AgentHTTPStandIn(unhealthy=["forwarder"]) as agent:
        run = selfcheck(["check", "--only", "agent_health"], {"DD_HEALTH_PORT": str(agent.port)})
    assert run.code == 1
    assert "forwarder" in run.stdout
