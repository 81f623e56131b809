"""Lint agrees with the runtime on a DatadogAgent: the translated pod, run, gets what lint says.

The node Agent's pod that ``selfcheck.lint.operator`` builds from an Operator example is run as
a real container of ``tests/support/pod.py`` (its cgroup under ``kubepods/besteffort/pod<uid>``,
its own mount namespace and read-only root, the Operator's mount table: each hostPath bound from
this machine, each emptyDir a tmpfs of its own, and a PID namespace of its own when the pod has
no hostPID). The Agent is played by the stand-in whose argv is ``agent run`` (no Agent binary can
be had here), with the pod's own environment. selfcheck then runs beside it with no mount at all
and the machine's PID namespace, judging the Agent through its root as node mode (``k8s/node``,
the only form for Operator installs) does; it is placed in the Agent's pod so that it judges this
Agent and not another suite's stand-in running on the same machine. Each check's status, reason
and required-ness must be the ones lint predicted for that resource.

What the machine stands in for: the node's ``/var/run`` is a directory holding a Docker API
stand-in's socket, its ``/var/run/datadog`` another directory (the sockets' hostPath), and the
Agent's health and expvar ports are ports this test owns (``DD_HEALTH_PORT`` and
``DD_EXPVAR_PORT`` replaced in the stand-in's environment: 5555 and 5000 cannot be bound
machine-wide beside other suites). ``agent_health`` and ``security`` are therefore not compared
(the security audit also sees this cgroup v1 machine's writable controller submounts, which a
manifest cannot show).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from selfcheck.lint import lint_pod
from selfcheck.lint.operator import NEWEST, build
from selfcheck.lint.pod import Container, PodTemplate
from selfcheck.lint.report import exit_code
from selfcheck.registry import ORDER
from tests.deploy.tools import REPO
from tests.support.node import Node, machine
from tests.support.pod import TMPFS, Spec, Volume, new_pod

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroups, mounts and chroot need root"),
]

EXAMPLES = REPO / "tests" / "lint" / "fixtures" / "operator"
COMPARED = tuple(c for c in ORDER if c not in ("agent_health", "security", "agent_container"))
"""The checks of the node's capabilities, which the pod's own spec decides: not the Agent's
health (the stand-in's), the audit, nor the Agent's own container as the kernel shows it."""


@pytest.fixture
def node() -> Iterator[Node]:
    with machine() as n:
        yield n


def _source(node: Node, host_path: str) -> str:
    """Where this machine provides a node path of the pod."""
    if host_path == "/var/run/datadog" or host_path.startswith("/var/run/datadog/"):
        return str(node.dsd_dir) + host_path.removeprefix("/var/run/datadog")
    if host_path == "/var/run" or host_path.startswith("/var/run/"):
        return str(node.run_dir) + host_path.removeprefix("/var/run")
    return host_path


def _volumes(node: Node, agent: Container) -> list[Volume]:
    volumes = []
    for mount in agent.mounts:
        if mount.is_host:
            source = _source(node, mount.host_path)
        elif mount.source == "emptyDir":
            source = TMPFS
        else:  # configMap and the like: nothing a check reads
            continue
        volumes.append(Volume(mount.volume, source, mount.mount_path, mount.read_only))
    return volumes


def _free_udp_port() -> int:
    """A UDP port no one holds now: the Agent's 8125 may be taken by another test's stand-in."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def agent_spec(node: Node, template: PodTemplate) -> Spec:
    """The translated pod's agent container as a container of this machine."""
    agent = template.agent
    env = dict(agent.env)
    env.update(DD_HEALTH_PORT=str(node.health.port), DD_EXPVAR_PORT=str(node.closed_port))
    if "DD_DOGSTATSD_SOCKET" in env:
        env["SA_DSD"] = "1"
    if env.get("DD_DOGSTATSD_PORT") != "0":  # the Agent listens on UDP too, on a free port here
        env.update(SA_UDP="1", DD_DOGSTATSD_PORT=str(_free_udp_port()))
    read_only = agent.security.get("readOnlyRootFilesystem") is True
    return Spec(
        new_pod(),
        _volumes(node, agent),
        env=env,
        uid=agent.uid if agent.uid is not None else 0,
        read_only_root=read_only,
        host_pid=template.host_pid,
    )


HOST_PID_OFF = {
    "apiVersion": "datadoghq.com/v2alpha1",
    "kind": "DatadogAgent",
    "metadata": {"name": "datadog"},
    "spec": {
        "features": {"dogstatsd": {"originDetectionEnabled": True}},
        "override": {"nodeAgent": {"hostPID": False}},
    },
}
"""Origin detection on, hostPID overridden off: ``origin_detection`` failed, a required check."""


def _template(name: str) -> PodTemplate:
    if name == "host-pid-overridden-off":
        return build(HOST_PID_OFF, NEWEST)
    (doc,) = [d for d in yaml.safe_load_all((EXAMPLES / f"{name}.yaml").read_text()) if d]
    return build(doc, NEWEST)


def _runtime(node: Node, pod_uid: str) -> tuple[int, dict[str, Any]]:
    """``selfcheck check`` beside the Agent. Its sample of the node's container processes is one
    process (PID 1's, outside any container): the other pods of this shared machine, which the
    resource says nothing about, are not what lint predicts."""
    spec = Spec(pod_uid, [], env={"SELFCHECK_SAMPLE": "1"}, read_only_root=True)
    done = node.pod.selfcheck(spec, ["check", "--json"])
    assert done.stdout, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


@pytest.mark.parametrize(
    "name",
    ["datadog-agent-minimum", "datadog-agent-with-unix-socket", "host-pid-overridden-off"],
)
def test_the_translated_pod_run_gets_the_predicted_verdicts(node: Node, name: str) -> None:
    """The default resource (no hostPID, origin detection off), the Operator's unix-socket
    example (origin detection with UDS: hostPID set by the Operator, a required check), and
    origin detection with hostPID overridden off (failed/not_host_pid, required)."""
    template = _template(name)
    linted = lint_pod(template)
    predicted = {r.check: r for r in linted.results}
    spec = agent_spec(node, template)
    agent_pid = node.pod.start_agent(spec)
    code, report = _runtime(node, spec.pod)
    assert code == exit_code([linted]), report  # 1: os_release (optional); 2: a required one
    assert report["view"]["view"] == "agent", report["view"]
    if template.host_pid:  # without it, the PID started is unshare's, the stand-in its child
        assert report["view"]["agent_pid"] == agent_pid  # this Agent, no other suite's
    seen = {r["check"]: r for r in report["checks"]}
    for cid in COMPARED:
        want, got = predicted[cid], seen[cid]
        assert (got["status"], got["reason"], got["required"]) == (
            str(want.status),
            str(want.reason),
            want.required,
        ), (cid, got["message"], want.outcome.message)
    if name == "host-pid-overridden-off":
        assert seen["origin_detection"]["status"] == "failed"
        assert predicted["origin_detection"].reason == "not_host_pid"
