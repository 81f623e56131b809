"""The Agent's eyes: its credentials in words, its pod's address, what a helper answer holds."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from selfcheck.host.agent import AgentProcess, Discovery
from selfcheck.host.eyes import (
    Credentials,
    Eyes,
    Pin,
    discovery_proc,
    enter,
    local_address,
    network,
    own_eyes,
    start_time,
    still_running,
)

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.244.1.0/24 2 0 2
        |-- 10.244.1.0
           /24 link UNICAST
        |-- 10.244.1.17
           /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
"""


def test_the_pods_address_is_the_first_local_non_loopback_one() -> None:
    assert local_address(FIB_TRIE) == "10.244.1.17"
    assert local_address(FIB_TRIE.replace("10.244.1.17", "127.0.0.2")) is None
    assert local_address("garbage\n|--\n/32 host LOCAL\n") is None


def test_credentials_in_the_words_every_surface_uses() -> None:
    assert Credentials(100, 101, frozenset()).words() == "uid 100, gid 101, groups none"
    assert Credentials(0, 0, frozenset({999, 5})).words() == "uid 0, gid 0, groups 5,999"


def test_discovery_uses_the_host_procfs_only_when_it_is_one(tmp_path: Path) -> None:
    assert discovery_proc(tmp_path) == Path("/proc")
    assert discovery_proc(Path("/proc")) == Path("/proc")


PROC = Path("/proc")


def _pin(pid: int) -> Pin:
    return Pin(PROC, pid, start_time(PROC, pid))


def test_a_pin_holds_while_its_process_runs_and_not_after() -> None:
    """Start time re-validation: the process pinned, then exited (a zombie not reaped yet,
    then reaped): from its exit on, the pin no longer holds."""
    process = subprocess.Popen(["sleep", "600"])
    pin = _pin(process.pid)
    assert pin.still()
    process.kill()
    _poll(lambda: Path(f"/proc/{process.pid}/stat").read_text().split(") ")[1][0] == "Z")
    assert not pin.still()  # exited, still in the table: its container is gone
    process.wait()
    assert not pin.still()
    assert not Pin(PROC, os.getpid(), "1").still()  # the same PID, another start time


def test_every_role_is_revalidated_by_its_start_time() -> None:
    """The core Agent and a trace-agent, found once: a trace-agent restarted (another
    process) makes the cached discovery stale, so the next cycle scans again."""
    code = "import time; time.sleep(600)"
    core = subprocess.Popen(["bash", "-c", f"exec -a agent /usr/bin/python3 -c '{code}' run"])
    trace = subprocess.Popen(["bash", "-c", "exec -a trace-agent sleep 600"])
    try:
        _poll(lambda: (PROC / str(core.pid) / "cmdline").read_bytes().startswith(b"agent\0"))
        found = Discovery(
            (
                AgentProcess(core.pid, "agent", "/", None, None),
                AgentProcess(trace.pid, "trace-agent", "/", None, None),
            ),
            2,
            True,
        )
        starts = {p.pid: start_time(PROC, p.pid) for p in found.processes}
        assert still_running(PROC, found, starts)
        trace.kill()
        trace.wait()
        assert not still_running(PROC, found, starts)
        assert not still_running(PROC, found, {**starts, core.pid: "1"})
    finally:
        for process in (core, trace):
            process.kill()
            process.wait()


def test_the_agents_network_is_compared_without_ptrace_and_unknown_said_so() -> None:
    """Another network namespace, read as another uid (no ptrace access to ``ns/net``), is
    told apart; a process gone is unknown, never 'shared'."""
    assert network(PROC, os.getpid()) == (True, None)
    other = subprocess.Popen(["unshare", "-n", "sleep", "600"])
    try:
        _poll(lambda: network(PROC, other.pid)[0] is False)
        assert network(PROC, other.pid) == (False, None)  # only a loopback there
    finally:
        other.kill()
        other.wait()
    assert network(PROC, other.pid) == (None, None)
    eyes = replace(own_eyes("fixture"), shares_loopback=None)
    assert eyes.loopback_unknown() == (
        "whether the Agent's network namespace is this one could not be read"
    )
    assert replace(eyes, shares_loopback=True).loopback_unknown() is None


def _poll(done: Callable[[], bool], limit: float = 30.0) -> None:
    """Until ``done()``; the limit only ends a broken run."""
    end = time.monotonic() + limit
    while not done():
        assert time.monotonic() < end, "never happened"
        time.sleep(0.02)


def test_the_agents_root_is_opened_once_per_agent_process_not_per_cycle() -> None:
    """Two cycles on the same Agent process reach its files by the same path (what the
    cgroup tree cache is keyed by); another process gets a root of its own."""
    first, second = enter(PROC, os.getpid()), enter(PROC, os.getpid())
    assert isinstance(first, Eyes) and isinstance(second, Eyes), (first, second)
    assert first.root.base == second.root.base
    assert str(first.root.base).startswith("/proc/self/fd/")
    assert first.pin == Pin(PROC, os.getpid(), start_time(PROC, os.getpid()))
    other = subprocess.Popen(["sleep", "600"])
    try:
        third = enter(PROC, other.pid)
        assert isinstance(third, Eyes)
        assert third.root.base != first.root.base
    finally:
        other.kill()
        other.wait()
