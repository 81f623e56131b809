"""The rule that picks the Agent to judge, fed fixed facts; and its reader on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from selfcheck.host import agent, nodeagent
from selfcheck.host.nodeagent import Candidate, choose_node, choose_sidecar

HZ = 100
NOW = 1_000_000  # ticks after boot
INSTALL = ("/host/proc<-/", "/var/run/datadog<-/run/datadog")
OTHER_INSTALL = ("/host/proc<-/", "/var/run/datadog<-/run/datadog-second")


def _uid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-000000000000"


def node_agent(pid: int, pod: int, start: int = NOW - 5_000, **facts: object) -> Candidate:
    """A healthy node Agent's facts: hostPID, /host/proc, cgroups, the node's socket dir."""
    process = agent.AgentProcess(
        pid, "agent", f"/kubepods/besteffort/pod{_uid(pod)}/{pod:064x}", _uid(pod), f"{pod:064x}"
    )
    base = Candidate(process, start, False, True, True, True, True, 4026531992, INSTALL)
    return replace(base, **facts)  # type: ignore[arg-type]


def runner(pid: int, pod: int, start: int = NOW - 90_000) -> Candidate:
    """The Operator's Cluster Checks Runner: DD_CLC_RUNNER_ENABLED, no host access."""
    return node_agent(
        pid,
        pod,
        start,
        runner=True,
        host_pid=False,
        host_proc=False,
        host_cgroup=False,
        shared_socket=False,
        install=(),
    )


def test_a_cluster_checks_runner_started_first_is_passed_over() -> None:
    choice = choose_node([runner(10, 1), node_agent(20, 2)], NOW, HZ)
    assert choice.chosen is not None and choice.chosen.process.pid == 20
    assert choice.rivals == ()
    assert "is a Cluster Checks Runner (DD_CLC_RUNNER_ENABLED)" in choice.why
    assert f"pod {_uid(2)} container {2:064x}"[:63] in choice.why
    assert "hostPID, procfs at /host/proc" in choice.why


def test_the_operators_default_agent_without_host_pid_is_told_from_its_runner() -> None:
    """The Operator leaves hostPID off unless origin detection and DogStatsD UDS are both on:
    its Agent still holds /host/proc, the cgroups and the node's socket directory."""
    operator_agent = node_agent(20, 2, host_pid=False)
    choice = choose_node([runner(10, 1), operator_agent], NOW, HZ)
    assert choice.chosen == operator_agent
    assert "(procfs at /host/proc, cgroups at /host/sys/fs/cgroup, the node's socket" in choice.why


def test_a_runner_whose_environ_cannot_be_read_loses_on_node_access() -> None:
    """Another identity: the environ is unread, but the runner holds no node access."""
    hidden = replace(runner(10, 1), runner=None)
    choice = choose_node([hidden, node_agent(20, 2)], NOW, HZ)
    assert choice.chosen is not None and choice.chosen.process.pid == 20
    assert "passed over for holding no node access" in choice.why


def test_only_a_runner_on_the_node_is_no_node_agent() -> None:
    choice = choose_node([runner(10, 1)], NOW, HZ)
    assert choice.chosen is None
    assert "no node Agent on this node" in choice.why and "Cluster Checks Runner" in choice.why
    assert choose_node([], NOW, HZ) == nodeagent.Choice(None, "")


def test_a_node_agent_that_lost_every_host_access_is_still_judged() -> None:
    """No procdir, no cgroups, no hostPID, a private socket dir: its checks must say so."""
    bare = node_agent(
        20, 2, host_pid=False, host_proc=False, host_cgroup=False, shared_socket=False
    )
    choice = choose_node([runner(10, 1), bare], NOW, HZ)
    assert choice.chosen is not None and choice.chosen.process.pid == 20
    assert "no node access" in choice.why


def test_a_rolling_update_takes_the_new_pod_and_is_no_finding() -> None:
    old = node_agent(20, 2, start=NOW - 500_000)
    new = node_agent(30, 3, start=NOW - 2_000)
    choice = choose_node([old, new], NOW, HZ)
    assert choice.chosen is not None and choice.chosen.process.pid == 30
    assert choice.rivals == ()
    assert "the older pod of its rolling update" in choice.why and "(pid 20)" in choice.why


def test_a_rolling_update_judges_the_new_pod_even_with_less_node_access() -> None:
    """The new pod's fault (here: no hostPID) is the one that stays once the old pod ends."""
    old = node_agent(20, 2, start=NOW - 500_000)
    new = node_agent(30, 3, start=NOW - 2_000, host_pid=False)
    choice = choose_node([old, new], NOW, HZ)
    assert choice.chosen == new and choice.rivals == ()
    assert "procfs at /host/proc" in choice.why and "hostPID" not in choice.why.split(";")[0]


def test_one_install_twice_for_longer_than_a_rollout_is_two_node_agents() -> None:
    old = node_agent(20, 2, start=NOW - 500_000)
    new = node_agent(30, 3, start=NOW - (nodeagent.ROLLOUT_SECONDS + 1) * HZ)
    choice = choose_node([old, new], NOW, HZ)
    assert choice.chosen is not None and choice.chosen.process.pid == 30
    assert [c.process.pid for c in choice.rivals] == [20]


def test_two_installations_are_two_node_agents_and_the_fuller_one_is_judged() -> None:
    first = node_agent(20, 2, start=NOW - 9_000)
    second = node_agent(30, 3, start=NOW - 1_000, host_pid=False, install=OTHER_INSTALL)
    choice = choose_node([second, first], NOW, HZ)
    assert choice.chosen is not None and choice.chosen.process.pid == 20  # more node access
    assert [c.process.pid for c in choice.rivals] == [30]
    assert "another node Agent runs beside it" in choice.why and "(pid 30)" in choice.why


def test_ties_go_to_the_newest_then_the_highest_pid() -> None:
    a = node_agent(20, 2, start=NOW - 9_000, install=OTHER_INSTALL)
    b = node_agent(30, 3, start=NOW - 1_000)
    assert choose_node([a, b], NOW, HZ).chosen == b
    c = node_agent(40, 4, start=NOW - 1_000, install=OTHER_INSTALL)
    assert choose_node([b, c], NOW, HZ).chosen == c


OWN_POD = _uid(7)
OWN_PATH = f"/kubepods/besteffort/pod{OWN_POD}/{'a' * 64}"


def test_a_sidecar_takes_its_pods_agent_by_cgroup() -> None:
    mine = node_agent(20, 7)
    choice = choose_sidecar([node_agent(10, 1), mine], OWN_PATH, None)
    assert choice.chosen == mine and "its pod cgroup" in choice.why


def test_a_sidecar_in_a_named_pod_never_takes_another_pod_by_network() -> None:
    other = node_agent(10, 1, net_ns=55)
    assert choose_sidecar([other], OWN_PATH, 55).chosen is None


def test_a_sidecar_whose_cgroups_name_no_pod_takes_the_agent_of_its_network_namespace() -> None:
    theirs = node_agent(10, 1, net_ns=77)
    mine = replace(
        node_agent(20, 2, net_ns=55),
        process=agent.AgentProcess(20, "agent", "/docker/" + "b" * 64, None, "b" * 64),
    )
    choice = choose_sidecar([theirs, mine], "/docker/" + "a" * 64, 55)
    assert choice.chosen == mine
    assert "network namespace (net:[55])" in choice.why


def test_a_host_network_shared_by_two_containers_proves_nothing() -> None:
    one = node_agent(10, 1, net_ns=55)
    two = node_agent(20, 2, net_ns=55)
    choice = choose_sidecar([one, two], "/docker/" + "a" * 64, 55)
    assert choice.chosen is None and "2 containers" in choice.why
    assert choose_sidecar([one], "/docker/" + "a" * 64, None).chosen is None


# --- the reader, on real processes ---------------------------------------------------------


@pytest.fixture
def agent_run(tmp_path: Path) -> Iterator[int]:
    """A real process whose argv is ``agent run`` (no Agent binary here), with runner env."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "__main__.py").write_text(
        "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    code = "import os, sys; os.execv(sys.executable, ['agent', 'run'])"
    env = {"DD_CLC_RUNNER_ENABLED": "true", "DD_API_KEY": "canary-31b4", "PATH": "/usr/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_read_candidate_of_a_real_process(agent_run: int) -> None:
    process = agent.AgentProcess(agent_run, "agent", "/", None, None)
    facts = nodeagent.read_candidate(Path("/proc"), process)
    assert facts.runner is True
    assert facts.host_pid is True  # this test's PID namespace is the procfs's own
    assert facts.host_proc is False and facts.host_cgroup is False
    assert facts.net_ns == os.stat("/proc/self/ns/net").st_ino
    now, hertz = nodeagent.now_ticks(Path("/proc"))
    assert 0 < facts.start <= now and hertz > 0
    assert "canary-31b4" not in repr(facts)


def test_read_candidate_of_a_vanished_process_reads_nothing() -> None:
    process = agent.AgentProcess(2**22 + 7, "agent", "/", None, None)
    facts = nodeagent.read_candidate(Path("/proc"), process)
    assert (facts.runner, facts.host_pid, facts.host_proc, facts.net_ns) == (
        None,
        None,
        None,
        None,
    )
    assert facts.start == 0
