"""The runner: deadlines per check, stuck checks contained, counters per run, change logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from selfcheck.config import AGENT_SETTINGS, OWN_SETTINGS
from selfcheck.context import CheckContext
from selfcheck.host.capabilities import mask_of
from selfcheck.host.eyes import Eyes, Pin, enter, own_eyes, start_time
from selfcheck.model import Outcome, Reason, Status, ok
from selfcheck.registry import all_checks
from selfcheck.runner import ATTEMPTS, Runner
from tests.support.configs import FAST, make_config
from tests.support.fake_checks import FifoBlocker, failing, passing, raising, spec

IDS = frozenset({"fine", "broken", "buggy", "stuck"})


def _threads(name: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name == name)


def test_a_check_blocked_in_a_syscall_is_abandoned_and_not_restarted(tmp_path: Path) -> None:
    blocker = FifoBlocker(tmp_path)
    runner = Runner(make_config(FAST, checks=IDS), {"fine": passing(), "stuck": blocker.spec})
    began = time.monotonic()
    first = runner.run_cycle()
    assert time.monotonic() - began < 5  # bounded by the deadline, not by the FIFO
    assert first.results["fine"].status == Status.OK
    stuck = first.results["stuck"]
    assert (stuck.status, stuck.reason) == (Status.FAILED, Reason.TIMEOUT)
    assert "SELFCHECK_CHECK_TIMEOUT" in stuck.outcome.message

    second = runner.run_cycle()
    assert "still blocked" in second.results["stuck"].outcome.message
    assert _threads("check-stuck") == 1  # never a second copy of a stuck check

    blocker.release()
    deadline = time.monotonic() + 5
    while _threads("check-stuck") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _threads("check-stuck") == 0
    third = runner.run_cycle()  # once unblocked, the check runs again and recovers
    assert third.results["stuck"].status == Status.OK
    assert (third.counters["stuck"].runs, third.counters["stuck"].failures) == (3, 2)


def test_checks_run_on_the_threads_of_the_cycle_before_and_a_stuck_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    """No thread start per check per cycle (kernel thread ids, which are not reused at once
    as ``threading.get_ident`` values are); the thread of a check stuck in the kernel is
    never handed another check, which gets a thread of its own."""
    seen: dict[str, list[int]] = {"fine": [], "broken": []}

    def recording(cid: str) -> object:
        def run(ctx: object) -> Outcome:
            seen[cid].append(threading.get_native_id())
            return ok(f"{cid} works")

        return run

    blocker = FifoBlocker(tmp_path)
    checks = {cid: spec(cid, recording(cid)) for cid in ("fine", "broken")}
    runner = Runner(make_config(FAST, checks=IDS), checks)
    runner.run_cycle()
    first = set(seen["fine"] + seen["broken"])
    for _ in range(3):
        runner.run_cycle()
    assert set(seen["fine"] + seen["broken"]) <= first | _idle_before(first)

    stuck_runner = Runner(make_config(FAST, checks=IDS), {"stuck": blocker.spec, **checks})
    try:
        stuck_runner.run_cycle()
        stuck_threads = [t.native_id for t in threading.enumerate() if t.name == "check-stuck"]
        assert len(stuck_threads) == 1
        seen["fine"].clear()
        seen["broken"].clear()
        second = stuck_runner.run_cycle()
        assert "still blocked" in second.results["stuck"].outcome.message
        assert seen["fine"] and seen["broken"]
        assert stuck_threads[0] not in seen["fine"] + seen["broken"]
    finally:
        blocker.release()


def _idle_before(first: set[int]) -> set[int]:
    """Threads left idle by earlier tests of this process may serve too: still no new one."""
    threads = {t.native_id for t in threading.enumerate() if t.name.startswith("check-")}
    return {tid for tid in threads if tid is not None} - first


def test_an_exception_is_status_error_not_a_crash() -> None:
    runner = Runner(make_config(FAST, checks=IDS), {"buggy": raising(), "fine": passing()})
    snap = runner.run_cycle()
    buggy = snap.results["buggy"]
    assert (buggy.status, buggy.reason) == (Status.ERROR, Reason.EXCEPTION)
    assert "ZeroDivisionError" in buggy.outcome.message
    assert snap.results["fine"].status == Status.OK


def test_counters_count_runs_and_failures() -> None:
    runner = Runner(make_config(FAST, checks=IDS), {"fine": passing(), "broken": failing()})
    for _ in range(3):
        snap = runner.run_cycle()
    assert snap.counters["fine"].runs == 3 and snap.counters["fine"].failures == 0
    assert snap.counters["broken"].runs == 3 and snap.counters["broken"].failures == 3
    assert snap.counters["fine"].last_success_at is not None
    assert snap.counters["broken"].last_success_at is None
    assert snap.generation == 3


def test_skip_and_require_override_the_defaults() -> None:
    config = make_config(FAST, checks=IDS, SELFCHECK_SKIP="broken", SELFCHECK_REQUIRE="buggy")
    runner = Runner(config, {"broken": failing(), "buggy": raising()})
    snap = runner.run_cycle()
    assert (snap.results["broken"].status, snap.results["broken"].reason) == (
        Status.SKIPPED,
        Reason.DISABLED,
    )
    assert runner.required == frozenset({"buggy"})
    assert [r.check for r in snap.failing_required()] == ["buggy"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_one_log_line_per_status_change_not_per_run() -> None:
    logger = logging.getLogger("selfcheck.test.runner")
    handler = _Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    runner = Runner(make_config(FAST, checks=IDS), {"fine": passing()}, logger=logger)
    for _ in range(4):
        runner.run_cycle()
    changes = [r for r in handler.records if r.getMessage() == "check status changed"]
    assert len(changes) == 1
    assert changes[0].fields["check"] == "fine"  # type: ignore[attr-defined]


@pytest.mark.parametrize("cycles", [1, 3])
def test_liveness_follows_progress(cycles: int) -> None:
    clock = [1000.0]
    runner = Runner(make_config(FAST, checks=IDS), {"fine": passing()}, clock=lambda: clock[0])
    for _ in range(cycles):
        runner.run_cycle()
    assert runner.is_live()
    clock[0] += runner.config.stale_after + 1
    assert not runner.is_live()


def test_a_failure_to_look_for_the_agent_leaves_the_cycle_to_its_own_view() -> None:
    """A bug in discovery must not stop every check: the cycle runs on selfcheck's own view."""

    def broken() -> Eyes:
        raise RuntimeError("discovery bug")

    checks = {"procfs": all_checks()["procfs"]}
    runner = Runner(make_config(HOST_PROC="/proc"), checks, look=broken)
    snapshot = runner.run_cycle()
    assert snapshot.eyes["view"] == "own"
    assert snapshot.eyes["why"] == "looking for the Agent failed (RuntimeError)"
    assert snapshot.results["procfs"].status is Status.OK


def test_the_service_checks_follow_the_transport_the_install_offers(tmp_path: Path) -> None:
    """Over UDS the socket the cycle judged; with UDS off, the Agent's UDP port on the loopback
    a sidecar shares with it (selfcheck.delivery.udp_target)."""
    checks = {"procfs": all_checks()["procfs"]}
    pod = {"SELFCHECK_CONTAINERIZED": "true", "HOST_PROC": "/proc"}
    udp = Runner(make_config(pod, DD_DOGSTATSD_PORT="9125"), checks, look=lambda: own_eyes("t"))
    udp.run_cycle()
    assert udp.dogstatsd_target() == ("127.0.0.1", 9125)
    sock = tmp_path / "dsd.socket"
    uds = Runner(make_config(pod, DD_DOGSTATSD_SOCKET=sock), checks, look=lambda: own_eyes("t"))
    uds.run_cycle()
    assert uds.dogstatsd_target() == str(sock)


def _pinned_eyes(pid: int, missing: int = 0) -> Eyes:
    """The Agent's eyes pinned to ``pid`` (a real process of this test), rooted at ``/``."""
    pin = Pin(Path("/proc"), pid, start_time(Path("/proc"), pid))
    base = own_eyes("fixture")
    return replace(base, view="agent", agent_pid=pid, pin=pin, missing=missing)


def test_a_cycle_whose_agent_restarted_is_run_again_and_only_the_new_one_published() -> None:
    """The first look pins a process the check ends mid-cycle (the Agent restarting); that
    cycle's verdict is discarded and the cycle runs again at once on the next Agent."""
    first = subprocess.Popen(["sleep", "600"])
    second = subprocess.Popen(["sleep", "600"])
    looks = iter([_pinned_eyes(first.pid), _pinned_eyes(second.pid)])

    def restarts_the_agent(ctx: CheckContext) -> Outcome:
        if ctx.host.eyes.agent_pid == first.pid:
            first.kill()
            first.wait()
            return Outcome(Status.FAILED, Reason.IO_ERROR, "the Agent is gone", "fix it")
        return ok(f"pid {ctx.host.eyes.agent_pid}")

    try:
        checks = {"probe": spec("probe", restarts_the_agent)}
        runner = Runner(make_config(FAST, checks=checks), checks, look=lambda: next(looks))
        snapshot = runner.run_cycle()
    finally:
        second.kill()
        second.wait()
    assert snapshot.generation == 1
    assert snapshot.eyes["agent_pid"] == second.pid
    probe = snapshot.results["probe"]
    assert (probe.status, probe.outcome.message, probe.view) == (
        Status.OK,
        f"pid {second.pid}",
        "agent",
    )
    assert snapshot.counters["probe"].runs == 1  # the discarded run is not counted


def test_an_agent_that_changes_under_every_cycle_is_not_judged() -> None:
    """Bounded: after ``ATTEMPTS`` cycles the Agent counts as not found, and says why."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    looked: list[int] = []

    def look() -> Eyes:
        looked.append(1)
        return replace(_pinned_eyes(os.getpid()), pin=Pin(Path("/proc"), gone.pid, "1"))

    checks = {"fine": passing()}
    runner = Runner(make_config(FAST, checks=checks), checks, look=look)
    snapshot = runner.run_cycle()
    assert len(looked) == ATTEMPTS
    assert snapshot.eyes["view"] == "own"
    assert f"the Agent (pid {gone.pid}) exited as it was found" in snapshot.eyes["why"]
    assert runner.agent_changed


def test_a_denial_a_missing_capability_could_lift_is_not_labelled_the_agents() -> None:
    dac = mask_of(["CAP_DAC_OVERRIDE"])
    eyes = _pinned_eyes(os.getpid(), missing=dac)
    checks = {"fine": passing(), "broken": failing()}
    snapshot = Runner(make_config(FAST, checks=checks), checks, look=lambda: eyes).run_cycle()
    assert snapshot.results["fine"].view == "agent"
    broken = snapshot.results["broken"]
    assert broken.view == "own"
    assert broken.outcome.details["capabilities_missing"] == ["CAP_DAC_OVERRIDE"]
    assert snapshot.eyes["capabilities_missing"] == ["CAP_DAC_OVERRIDE"]
    unmarked = replace(eyes, missing=mask_of(["CAP_SYS_TIME"]))  # no access depends on it
    again = Runner(make_config(FAST, checks=checks), checks, look=lambda: unmarked).run_cycle()
    assert again.results["broken"].view == "agent"


WAIT = "import sys; print('ready', flush=True); sys.stdin.readline()"
STARTING = f"""
import os, sys
{WAIT}
os.execve(sys.executable, [sys.executable, "-c", {WAIT!r}], {{"DD_LOGS_ENABLED": "true"}})
"""


@pytest.fixture
def starting_agent() -> Iterator[subprocess.Popen[bytes]]:
    """A real process whose ``environ`` reads empty, as a just-started Agent's does until its
    ``execve`` has laid the environment out (``selfcheck.host.agent.AgentEnv.blank``): it is
    started with none. Told to, it execs itself with the Agent's ``DD_LOGS_ENABLED=true``,
    keeping its PID and start time as the Agent would, and says ``ready`` again."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STARTING], env={}, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_an_agent_whose_environ_reads_empty_is_read_again_next_cycle(
    starting_agent: subprocess.Popen[bytes],
) -> None:
    """An empty environ is not "no settings": that cycle is selfcheck's own, and the next one
    reads the Agent's settings. (Finding the Agent needs a pod cgroup, which
    tests/test_whose_view.py builds; here the Agent is given by its PID.)"""
    pid = starting_agent.pid

    def the_agent() -> Eyes:
        entered = enter(Path("/proc"), pid)
        return own_eyes(entered, Path("/proc"), pid) if isinstance(entered, str) else entered

    checks = {"pod_logs": all_checks()["pod_logs"]}
    runner = Runner(make_config(HOST_PROC="/proc"), checks, look=the_agent)
    first = runner.run_cycle(only=())
    assert first.eyes["view"] == "own"
    assert first.eyes["why"] == (
        f"the Agent's /proc/{pid}/environ shows no environment yet (the process is still "
        "starting): read again next cycle"
    )
    assert (runner.cycle_config.settings_from, first.required) == (OWN_SETTINGS, frozenset())

    assert starting_agent.stdin is not None and starting_agent.stdout is not None
    starting_agent.stdin.write(b"exec\n")
    starting_agent.stdin.flush()
    assert starting_agent.stdout.readline() == b"ready\n"
    second = runner.run_cycle(only=())
    assert second.eyes["view"] == "agent"
    assert runner.cycle_config.settings_from == AGENT_SETTINGS
    assert second.required == frozenset({"pod_logs"})
