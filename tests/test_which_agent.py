"""Which Agent is judged, among every ``agent run`` on the node (docs/node-mode.md).

Real containers of ``tests/support/pod.py``. The Agent and the Cluster Checks Runner are both
played by the stand-in whose argv is ``agent run`` (the Agent binary cannot be had here); the
runner has the Operator's shape (DataDog/datadog-operator internal/controller/datadogagent/
component/clusterchecksrunner): ``DD_CLC_RUNNER_ENABLED=true``, a read-only root, a PID
namespace of its own (no hostPID), no host volume, its DogStatsD socket in a tmpfs of its own,
and it starts before the Agent, so a scan in PID order meets it first. Each test compares what
``selfcheck check --json`` says with the runner beside the Agent and without it.

The containers share a PID namespace made for the test, standing for the node's (as a kind
node's does), so other suites' Agent stand-ins on this machine are not on this "node"; node
mode then reads the node's processes through a procdir mount (``/host/proc``), as it would on
such a node. Origin detection is off in the Agent's settings (``skipped``/``not_enabled``):
its sample of the node's container processes, not the choice, is what it would add.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from selfcheck.host.eyes import NODE_RESCAN_CYCLES
from tests.support.node import Node, closed_port
from tests.support.node import machine as node_machine
from tests.support.pod import TMPFS, Spec, Volume, new_pod
from tests.test_whose_view import (
    CANARY,
    _status_when,
    agent_env,
    agent_volumes,
    run_selfcheck,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroups, mounts and chroot need root"),
]


@pytest.fixture
def machine() -> Iterator[Node]:
    with node_machine(own_node=True) as node:
        yield node


def start_runner(node: Node, **shape: Any) -> int:
    """The Cluster Checks Runner: ``exec agent run`` with the Operator's runner shape."""
    spec = Spec(
        new_pod(),
        [Volume("dsdsocket", TMPFS, "/var/run/datadog", read_only=False)],
        env={"DD_CLC_RUNNER_ENABLED": "true", "DD_API_KEY": CANARY, "SA_DSD": "1"},
        read_only_root=True,
        host_pid=False,
        **shape,
    )
    return node.pod.start_agent(spec)


def node_mode() -> Spec:
    """``k8s/node`` on a node that is a PID namespace of its own: hostPID, and procdir."""
    volumes = [Volume("procdir", None, "/host/proc")]
    return Spec(new_pod(), volumes, env={"SELFCHECK_MODE": "node"}, read_only_root=True)


def second_install(node: Node) -> list[Volume]:
    """Another installation's volumes: the same table, its socket directory elsewhere on the
    node (pods of one install, a rolling update's, share every node path)."""
    other = node.pod.base / "dsd-second"
    other.mkdir(mode=0o1777, exist_ok=True)
    other.chmod(0o1777)
    return [
        Volume("dsdsocket", str(other), v.target, read_only=False) if v.name == "dsdsocket" else v
        for v in agent_volumes(node)
    ]


def verdicts(report: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {r["check"]: (r["status"], r["reason"], r["view"]) for r in report["checks"]}


def judged(report: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in report["checks"] if r["check"] == "agent_container")


REQUIRED = ("procfs", "cgroups", "runtime_socket", "dogstatsd_socket")


def healthy_env(node: Node) -> dict[str, str]:
    return {**agent_env(node), "DD_DOGSTATSD_ORIGIN_DETECTION": "false"}


def test_node_mode_judges_the_agent_not_the_cluster_checks_runner_started_before_it(
    machine: Node,
) -> None:
    runner = start_runner(machine)
    pod_uid = new_pod()
    machine.pod.start_agent(
        Spec(pod_uid, agent_volumes(machine), env=healthy_env(machine), read_only_root=True)
    )
    code, beside = run_selfcheck(machine, node_mode())
    machine.pod.stop(runner)
    alone_code, alone = run_selfcheck(machine, node_mode())
    assert verdicts(beside) == verdicts(alone), (beside, alone)
    for cid in REQUIRED:
        assert verdicts(beside)[cid] == ("ok", "ok", "agent"), verdicts(beside)
    assert (code, alone_code) == (0, 0), verdicts(beside)
    chosen = beside["view"]["chosen"]
    assert chosen.startswith(f"pod {pod_uid} container "), chosen
    assert "a Cluster Checks Runner (DD_CLC_RUNNER_ENABLED)" in chosen
    assert "hostPID, procfs at /host/proc, cgroups at /host/sys/fs/cgroup" in chosen
    assert judged(beside)["details"]["container"]["pod_uid"] == pod_uid
    assert CANARY not in json.dumps(beside)


def test_only_a_runner_on_the_node_is_no_agent_and_says_so(machine: Node) -> None:
    start_runner(machine)
    code, report = run_selfcheck(machine, node_mode())
    container = judged(report)
    assert (container["status"], container["reason"]) == ("degraded", "not_found"), container
    assert "is a Cluster Checks Runner" in container["message"]
    assert report["view"]["view"] == "own" and "Cluster Checks Runner" in report["view"]["why"]
    assert code == 1


LAYOUTS = {
    # the kubelet's pod cgroup: the sidecar's Agent is told by it
    "kubelet pod cgroup": "its pod cgroup",
    # a runtime's <parent>/<id>, as docker makes: only the network namespace tells
    "no pod cgroup": "in this pod's network namespace",
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_sidecar_without_a_cgroup_tree_judges_its_pods_agent_not_the_runner(
    machine: Node, layout: str
) -> None:
    """A sidecar with no host mount at all (no cgroup tree of the node), beside a runner started
    first in a pod of its own; the pod's containers share one network namespace."""
    parent = f"sc-docker-{new_pod()[:8]}" if layout == "no pod cgroup" else None
    runner = start_runner(machine, cgroup_parent=parent, net_ns=machine.pod.new_netns())
    pod_uid, pod_net = new_pod(), machine.pod.new_netns()
    env = {**healthy_env(machine), "DD_HEALTH_PORT": "0"}  # the health stand-in is not in the pod
    machine.pod.start_agent(
        Spec(
            pod_uid,
            agent_volumes(machine),
            env=env,
            read_only_root=True,
            cgroup_parent=parent,
            net_ns=pod_net,
        )
    )
    bare = Spec(pod_uid, [], env={}, read_only_root=True, cgroup_parent=parent, net_ns=pod_net)
    code, beside = run_selfcheck(machine, bare)
    machine.pod.stop(runner)
    alone_code, alone = run_selfcheck(machine, bare)
    assert verdicts(beside) == verdicts(alone), (beside, alone)
    assert beside["view"]["view"] == "agent", beside["view"]
    assert LAYOUTS[layout] in beside["view"]["chosen"], beside["view"]
    for cid in REQUIRED:
        assert verdicts(beside)[cid] == ("ok", "ok", "agent"), verdicts(beside)
    assert (code, alone_code) == (0, 0), verdicts(beside)


def test_two_node_agents_are_a_finding_naming_both(machine: Node) -> None:
    """A second installation: its socket directory is another node directory."""
    first, second = new_pod(), new_pod()
    volumes = agent_volumes(machine)
    machine.pod.start_agent(
        Spec(first, volumes, env=healthy_env(machine), read_only_root=True, container_id="a" * 64)
    )
    machine.pod.start_agent(
        Spec(
            second,
            second_install(machine),
            env=healthy_env(machine),
            read_only_root=True,
            container_id="b" * 64,
        )
    )
    code, report = run_selfcheck(machine, node_mode())
    container = judged(report)
    assert (container["status"], container["reason"]) == ("degraded", "two_agents"), container
    finding = next(f for f in container["findings"] if f["id"] == "two_node_agents")
    assert f"pod {first} container {'a' * 12}" in finding["message"]
    assert f"pod {second} container {'b' * 12}" in finding["message"]
    assert "uninstall" in finding["remediation"]
    assert container["details"]["container"]["pod_uid"] == second  # the newest, equal access
    assert "another node Agent runs beside it" in report["view"]["chosen"]
    assert code == 1


def test_a_rolling_update_judges_the_new_pod_without_a_finding(machine: Node) -> None:
    old, new = new_pod(), new_pod()
    for uid in (old, new):
        machine.pod.start_agent(
            Spec(uid, agent_volumes(machine), env=healthy_env(machine), read_only_root=True)
        )
    code, report = run_selfcheck(machine, node_mode())
    container = judged(report)
    assert (container["status"], container["reason"]) == ("ok", "ok"), container
    assert container["details"]["container"]["pod_uid"] == new
    assert f"the older pod of its rolling update, pod {old}" in report["view"]["chosen"]
    assert code == 0


def test_serve_sees_a_second_installation_that_starts_after_its_agent(machine: Node) -> None:
    """The chosen Agent lives on, so only the node scan every NODE_RESCAN_CYCLES shows the
    second installation: /status turns to two_agents within those cycles."""
    machine.pod.start_agent(
        Spec(new_pod(), agent_volumes(machine), env=healthy_env(machine), read_only_root=True)
    )
    port = closed_port()
    spec = node_mode()
    spec.env.update({"SELFCHECK_INTERVAL": "0.2", "SELFCHECK_LISTEN": f"127.0.0.1:{port}"})
    serving = machine.pod.popen_selfcheck(spec, ["serve"])
    first = _status_when(port, lambda body: body.get("view", {}).get("view") == "agent")
    assert (judged(first)["status"], judged(first)["reason"]) == ("ok", "ok"), judged(first)
    second = new_pod()
    machine.pod.start_agent(
        Spec(second, second_install(machine), env=healthy_env(machine), read_only_root=True)
    )
    started = _status_when(port, lambda body: True)["generation"]
    later = _status_when(port, lambda body: judged(body)["reason"] == "two_agents")
    assert later["generation"] <= started + NODE_RESCAN_CYCLES + 2, (started, later["generation"])
    assert f"pod {second}" in later["view"]["chosen"]
    serving.terminate()
