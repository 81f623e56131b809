"""Runs the checks, each under its own deadline, and publishes immutable snapshots.

How a check stuck inside a system call is contained: every check runs in a daemon thread
of its own for that run and the runner waits for it only until the check's deadline. A
thread blocked in the kernel (``open`` of a FIFO with no writer, a hung NFS ``stat``) cannot
be interrupted from Python, so it is *abandoned*: the check is reported ``failed``/``timeout``
for this cycle, the other checks, the HTTP server and the runner loop go on, and while that
thread is still stuck the next cycles report the same timeout without starting a second
copy. So at most one thread per check can ever be stuck, and being daemon threads they never
hold up shutdown. A thread whose check has returned waits for the next check (``_Workers``),
so a cycle's checks run on the threads of the cycle before instead of starting new ones.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from selfcheck import delivery
from selfcheck.config import Config, in_agent_container
from selfcheck.context import CheckContext
from selfcheck.host.capabilities import decode
from selfcheck.host.cgroup import CgroupLayout
from selfcheck.host.eyes import AGENT, OWN, Eyes, Finder, look, own_eyes
from selfcheck.host.view import HeldSockets, HostView, TreeCache
from selfcheck.logs import event, get_logger
from selfcheck.model import (
    CheckCounters,
    Outcome,
    Reason,
    Result,
    Snapshot,
    Status,
    skipped,
)
from selfcheck.registry import CheckSpec, required_ids, settle

if TYPE_CHECKING:
    from selfcheck.asagent import Helpers
    from selfcheck.delivery import Delivery, Item

Clock = Callable[[], float]
STAGGER = 0.05
ATTEMPTS = 3
"""Cycles run at once, one after the other, while the Agent changes under each (a restart):
the first is the cycle, the others its re-runs; then the Agent counts as not found."""


class AgentChangedError(Exception):
    """The Agent a cycle was pinned to is not running any more: its verdicts mix two."""


@dataclass(slots=True)
class _Attempt:
    """One run of one check in its own thread; ``outcome`` is set before ``done``."""

    spec: CheckSpec
    context: CheckContext
    started_at: float
    started_mono: float
    required: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    finished_mono: float | None = None

    def __call__(self) -> None:
        try:
            outcome = self.spec.vet(self.spec.run(self.context))
            self.outcome = settle(self.spec, outcome, self.required, self.context.config)
        except Exception as exc:
            get_logger().exception("check raised", extra={"fields": {"check": self.spec.id}})
            self.outcome = Outcome(
                Status.ERROR,
                Reason.EXCEPTION,
                f"the {self.spec.id} check itself failed: {type(exc).__name__}: {exc}",
                "This is a bug in selfcheck, not in the pod: report it with the log line "
                "that carries the traceback (selfcheck check --verbose shows it).",
            )
        finally:
            self.finished_mono = time.monotonic()
            self.done.set()


KEEP_IDLE = 300.0
"""Seconds a check thread with nothing to run waits for the next check before it ends:
longer than the default interval, so the next cycle finds it."""


class _Workers:
    """The threads checks run in, kept between cycles.

    Starting a thread per check was a tenth of a quiet cycle's CPU (``bench/footprint.py
    --agent-uid``). A thread whose check is stuck stays with that check, abandoned as before;
    a check finds an idle thread or gets a new one, so a stuck one never delays another.
    Each thread carries the name of the check it runs (``check-<id>``), ``check-idle`` between
    checks.
    """

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue[_Attempt]] = []
        self._lock = threading.Lock()

    def run(self, attempt: _Attempt) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            name = f"check-{attempt.spec.id}"
            threading.Thread(target=self._work, args=(inbox,), name=name, daemon=True).start()
        inbox.put(attempt)

    def _work(self, inbox: queue.SimpleQueue[_Attempt]) -> None:
        thread = threading.current_thread()
        while (attempt := self._next(inbox)) is not None:
            thread.name = f"check-{attempt.spec.id}"
            attempt()
            thread.name = "check-idle"
            with self._lock:
                self._idle.append(inbox)

    def _next(self, inbox: queue.SimpleQueue[_Attempt]) -> _Attempt | None:
        """The next check, or ``None`` when none came within ``KEEP_IDLE`` (the thread ends)."""
        try:
            return inbox.get(timeout=KEEP_IDLE)
        except queue.Empty:
            with self._lock:
                if inbox in self._idle:
                    self._idle.remove(inbox)
                    return None
            return inbox.get()  # handed a check between the timeout and the lock


_WORKERS = _Workers()
"""One set per process: every runner's checks (a test makes many runners) share it."""


class Runner:
    """Owns deadlines, timing, counters, ``required`` and status-change logs for all checks."""

    def __init__(
        self,
        config: Config,
        checks: Mapping[str, CheckSpec],
        clock: Clock = time.time,
        logger: logging.Logger | None = None,
        *,
        look: Callable[[], Eyes] | None = None,
        on_cycle: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.config = config
        self.on_cycle = on_cycle
        """Called by the background loop with each cycle's snapshot (the service checks)."""
        self.checks = dict(checks)
        self.required = required_ids(config, self.checks)
        self.cycle_config = config
        """The configuration the last cycle ran with: the Agent container's, in its view."""
        self._finder = Finder(config.mode)
        self._trees = TreeCache()
        self._look = look or self._look_for_agent
        self._eyes: Eyes | None = None
        self._pinned: Eyes | None = None
        """The eyes of the cycle under way, whose Agent is re-checked before publishing."""
        self.agent_changed = ""
        """Why the last cycle was discarded (the Agent changed under it), else empty."""
        self._helpers: Helpers | None = None
        """The helper holding the Agent's credentials, started at the first cycle that needs it."""
        self.clock = clock
        self._log = logger or get_logger()
        self._stuck: dict[str, _Attempt] = {}
        self._snapshot = Snapshot.empty(tuple(self.checks), self.required, clock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loop_started_at: float | None = None

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def run_cycle(self, only: Iterable[str] | None = None) -> Snapshot:
        """Run every (or every ``only``) check once, through this cycle's eyes, and publish.

        The eyes are the Agent container's when it is found and can be entered, else
        selfcheck's own (``selfcheck.host.eyes``). Where the Agent's credentials differ from
        selfcheck's, one helper process holding them runs the cycle (``selfcheck.asagent``).

        A cycle is pinned to one Agent process: when its start time changed by the time
        the verdicts are published, the cycle is discarded and run again at once.
        """
        wanted = [cid for cid in self.checks if only is None or cid in set(only)]
        self.agent_changed = ""
        for _ in range(ATTEMPTS):
            eyes = self._looked()
            if eyes.pin is not None and not eyes.pin.still():
                self.agent_changed = f"the Agent (pid {eyes.pin.pid}) exited as it was found"
                continue
            self._pinned = eyes
            try:
                if eyes.helper:
                    return self._run_as_agent(eyes, wanted)
                return self._run_with(eyes, wanted)
            except AgentChangedError as changed:
                self.agent_changed = str(changed)
                event(self._log, logging.INFO, "cycle discarded", why=self.agent_changed)
            finally:
                self._pinned = None
        node = self.config.mode == "node"
        why = f"{self.agent_changed} in each of {ATTEMPTS} cycles run one after the other"
        return self._run_with(own_eyes(why, blind=node), wanted)

    def _looked(self) -> Eyes:
        try:
            return self._look()
        except Exception as error:  # a bug in finding the Agent must not stop every check
            self._log.exception("looking for the Agent failed")
            return own_eyes(f"looking for the Agent failed ({type(error).__name__})")

    def dogstatsd_target(self) -> delivery.Target:
        """Where this process reaches the DogStatsD transport the last cycle judged: the
        Agent's UDP port where the install offers applications UDP (``delivery.udp_target``),
        else the socket inside the Agent's root in its view. When a helper held the Agent's
        credentials this process cannot follow that root (another uid): then its own mount of
        the socket directory, the sidecar's mirrored ``dsdsocket`` (node mode has none: the
        send is dropped and reported by ``dogstatsd_socket``)."""
        eyes = self._eyes
        if delivery.uses_udp(self.cycle_config):
            if eyes is None:
                return delivery.udp_target(self.cycle_config, True, None)
            return delivery.udp_target(
                self.cycle_config, eyes.shares_loopback is True, eyes.agent_address
            )
        if eyes is None or eyes.helper:
            return str(self.config.dogstatsd_socket)
        return str(eyes.root.at(self.cycle_config.dogstatsd_socket))

    def _look_for_agent(self) -> Eyes:
        return look(
            self._finder, self.config.host_proc, self._own_cgroup_top, self.config.view == "own"
        )

    def _own_cgroup_top(self) -> str | None:
        """The hierarchy of this container's own cgroup mounts, where the pod's containers
        are listed (sidecar discovery reads only their processes)."""
        layout = HostView(self.config.host_proc, self.config.cgroup_root).cgroup_layout()
        return layout.top if isinstance(layout, CgroupLayout) else None

    def _config_for(self, eyes: Eyes) -> Config:
        if eyes.view != AGENT:
            return self.config
        config = in_agent_container(self.config, frozenset(self.checks), eyes.agent_env)
        return config.with_overrides(running_as_root=eyes.credentials.uid == 0)

    def _run_with(self, eyes: Eyes, wanted: list[str]) -> Snapshot:
        """Checks start one after the other, each in its own thread, and the next starts as
        soon as the previous one finished or ``STAGGER`` seconds passed, whichever comes
        first. Started all at once, eleven threads contend for the interpreter lock at
        every system call, which cost a third more CPU and wall time per cycle
        (bench/cycle.py); staggered, a quick check runs alone, while a slow or hung one
        delays the others by ``STAGGER`` only and runs on, each under its own deadline.
        All of them share one ``HostView``: the host is read once per cycle, lazily.
        """
        config = self._config_for(eyes)
        self.cycle_config = config
        self.required = required_ids(config, self.checks)
        results = self._run_local(eyes, wanted, config, eyes.view)
        return self._publish(results, eyes, config.agent_notes)

    def _run_local(
        self,
        eyes: Eyes,
        wanted: list[str],
        config: Config,
        view: str,
        sockets: HeldSockets | None = None,
    ) -> dict[str, Result]:
        """Checks that compare selfcheck's own container with the Agent's
        (``CheckSpec.runs_as_selfcheck``) get selfcheck's own eyes and configuration, and
        their verdicts say ``own``: the accesses they rest on are selfcheck's; the Agent's
        sockets as the helper read them when one did."""
        theirs = HostView(config.host_proc, config.cgroup_root, eyes, self._trees)
        own = theirs
        if eyes.view == AGENT:
            selfs = own_eyes(eyes.why, eyes.proc, eyes.agent_pid, discovery=eyes.discovery)
            own = HostView(self.config.host_proc, self.config.cgroup_root, selfs)
        own.agent_sockets = sockets
        attempts: dict[str, _Attempt | Outcome] = {}
        for cid in wanted:
            mine = self.checks[cid].runs_as_selfcheck
            attempt = self._start(cid, own if mine else theirs, self.config if mine else config)
            attempts[cid] = attempt
            if isinstance(attempt, _Attempt):
                attempt.done.wait(STAGGER)
        return {
            cid: self._finish(cid, a, OWN if self.checks[cid].runs_as_selfcheck else view)
            for cid, a in attempts.items()
        }

    def _run_as_agent(self, eyes: Eyes, wanted: list[str]) -> Snapshot:
        """The helper with the Agent's credentials (one per Agent, kept between cycles) runs
        the cycle; the runner keeps the counters, logs and snapshot. A helper that cannot
        enter the Agent's root, does not answer or answers anything but verdicts leaves the
        cycle to selfcheck's own view, with why."""
        from selfcheck import asagent  # only where the Agent's identity differs: not resident

        if self._helpers is None:
            self._helpers = asagent.Helpers()
        config = self.config
        theirs = [cid for cid in wanted if not self.checks[cid].runs_as_selfcheck]
        budget = config.check_timeout + STAGGER * len(theirs) + asagent.ANSWER_ALLOWANCE
        started = self.clock()
        answer = asagent.run_cycle(
            self._helpers,
            eyes,
            ids=theirs,
            config=config,
            checks=self.checks,
            timeout=budget,
            started=started,
        )
        if answer.refused:
            fallback = own_eyes(
                f"{eyes.why}, but {answer.refused}",
                eyes.proc,
                eyes.agent_pid,
                blind=self.config.mode == "node",
                discovery=eyes.discovery,
            )
            return self._run_with(fallback, wanted)
        self.required = answer.required
        self.cycle_config = config.with_overrides(settings_from=answer.settings_from)
        results = {cid: r for cid, r in answer.verdicts.items() if cid in theirs}
        ours = [cid for cid in wanted if cid not in theirs]
        mine = own_eyes(eyes.why, eyes.proc, eyes.agent_pid, discovery=eyes.discovery)
        results.update(self._run_local(mine, ours, config, AGENT, answer.sockets))
        return self._publish(results, eyes, answer.notes)

    def deliver_as_agent(
        self, generation: int, items: list[Item], receipt: bool
    ) -> Delivery | None:
        """The service checks sent by the helper that serves the Agent the last cycle judged,
        into the Agent's root as its uid (a root server cannot follow that root, and node mode
        has no copy of the socket's directory); ``None`` when no helper serves it."""
        eyes, helpers = self._eyes, self._helpers
        if eyes is None or not eyes.helper or helpers is None:
            return None
        from selfcheck import asagent

        return asagent.deliver(helpers, eyes, generation, items, receipt)

    def _start(self, cid: str, host: HostView, config: Config) -> _Attempt | Outcome:
        if cid in config.skip:
            return skipped(Reason.DISABLED, f"{cid} is switched off by SELFCHECK_SKIP.")
        if host.eyes.blind and self.checks[cid].needs_view:
            return skipped(
                Reason.NOT_APPLICABLE,
                f"node mode judges the Agent container, and {host.eyes.why}",
            )
        stuck = self._stuck.get(cid)
        if stuck is not None and not stuck.done.is_set():
            return self._still_stuck(stuck)
        self._stuck.pop(cid, None)
        began = time.monotonic()
        context = CheckContext(config, host, began + config.check_timeout)
        attempt = _Attempt(self.checks[cid], context, self.clock(), began, cid in self.required)
        _WORKERS.run(attempt)
        return attempt

    def _still_stuck(self, attempt: _Attempt) -> Outcome:
        age = time.monotonic() - attempt.started_mono
        return self._timeout_outcome(
            attempt.spec,
            f"the {attempt.spec.id} check is still blocked from a run {age:.0f} s ago "
            "(in a system call or on a socket); no new run was started",
        )

    def _timeout_outcome(self, spec: CheckSpec, message: str) -> Outcome:
        remediation = spec.remediation(Reason.TIMEOUT) or (
            "Something this check reads or connects to does not answer: look for a hung "
            "mount (NFS, FUSE) or a wedged socket at the paths in the message."
        )
        return Outcome(Status.FAILED, Reason.TIMEOUT, message, remediation)

    def _finish(self, cid: str, attempt: _Attempt | Outcome, view: str) -> Result:
        now_mono = time.monotonic()
        if isinstance(attempt, Outcome):
            now = self.clock()
            return Result(cid, attempt, cid in self.required, 0.0, now, now, attempt.view or view)
        attempt.done.wait(max(0.0, attempt.context.deadline - now_mono))
        outcome = attempt.outcome if attempt.done.is_set() else None
        if outcome is None:
            self._stuck[cid] = attempt
            outcome = self._timeout_outcome(
                attempt.spec,
                f"the {cid} check did not finish within {self.config.check_timeout:g} s "
                "(SELFCHECK_CHECK_TIMEOUT) and was abandoned",
            )
        end_mono = attempt.finished_mono if attempt.done.is_set() else time.monotonic()
        duration = max(0.0, (end_mono or now_mono) - attempt.started_mono)
        return Result(
            cid,
            outcome,
            cid in self.required,
            duration,
            attempt.started_at,
            attempt.started_at + duration,
            outcome.view or view,
        )

    def _publish(self, results: dict[str, Result], eyes: Eyes, notes: tuple[str, ...]) -> Snapshot:
        pinned = self._pinned
        if pinned is not None and pinned.pin is not None and not pinned.pin.still():
            raise AgentChangedError(
                f"the Agent (pid {pinned.pin.pid}) restarted or exited during the cycle"
            )
        results = marked(results, eyes)
        previous = self._snapshot
        self._log_view(eyes)
        counters = dict(previous.counters)
        for cid, result in results.items():
            counters[cid] = counters.get(cid, CheckCounters()).after(result)
            self._log_change(previous.results.get(cid), result)
        merged = {**previous.results, **results}
        snapshot = Snapshot(
            generation=previous.generation + 1,
            check_ids=previous.check_ids,
            required=self.required,
            results=MappingProxyType(merged),
            counters=MappingProxyType(counters),
            completed_at=self.clock(),
            created_at=previous.created_at,
            notes=notes,
            eyes=eyes.to_json(),
        )
        self._snapshot = snapshot
        return snapshot

    def _log_view(self, eyes: Eyes) -> None:
        """One line when the cycle's eyes change (a sidecar that started before its Agent)."""
        before = self._eyes
        self._eyes = eyes
        if before is not None and (before.view, before.why) == (eyes.view, eyes.why):
            return
        event(self._log, logging.INFO, "view changed", view=eyes.view, why=eyes.why)

    def _log_change(self, before: Result | None, after: Result) -> None:
        if before is not None and (before.status, before.reason) == (after.status, after.reason):
            return
        bad = after.status in (Status.FAILED, Status.ERROR)
        level = logging.WARNING if bad else logging.INFO
        event(
            self._log,
            level,
            "check status changed",
            check=after.check,
            status=str(after.status),
            reason=str(after.reason),
            previous=str(before.status) if before else None,
            required=after.required,
            message=after.outcome.message,
        )

    # -- the background loop ------------------------------------------------------

    def start(self) -> None:
        self.loop_started_at = self.clock()
        self._thread = threading.Thread(target=self._loop, name="runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 0.5) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._helpers is not None:
            self._helpers.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                snapshot = self.run_cycle()
                if self.on_cycle is not None:
                    self.on_cycle(snapshot)
            except Exception:
                self._log.exception("runner cycle failed")
            elapsed = time.monotonic() - began
            self._stop.wait(max(0.0, self.config.interval - elapsed))

    def is_live(self, now: float | None = None) -> bool:
        """The loop made progress recently; depends on nothing outside this process."""
        now = self.clock() if now is None else now
        last = self._snapshot.completed_at or self.loop_started_at or self._snapshot.created_at
        return now - last <= self.config.stale_after


MARKED = frozenset({Status.FAILED, Status.DEGRADED, Status.ERROR})


def marked(results: Mapping[str, Result], eyes: Eyes) -> dict[str, Result]:
    """Verdicts a capability the eyes lack could change, labelled ``own`` and naming it.

    With fewer capabilities than the Agent (selfcheck never held them) an access the Agent
    makes may be denied here: a failed, degraded or errored verdict made in its root may then
    be selfcheck's alone. A check that sets its own view (the audit reads the Agent's
    ``status``, which no capability changes) keeps it."""
    missing = eyes.missing_access
    if not missing:
        return dict(results)
    names = list(decode(missing))
    out = dict(results)
    for cid, result in results.items():
        if result.view == AGENT and not result.outcome.view and result.status in MARKED:
            details = {**result.outcome.details, "capabilities_missing": names}
            outcome = replace(result.outcome, details=details)
            out[cid] = replace(result, outcome=outcome, view=OWN)
    return out
