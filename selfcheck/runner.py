"""Runs the checks, each under its own deadline, and publishes immutable snapshots.

How a check stuck inside a system call is contained: every check runs in its own daemon
thread and the runner waits for it only until the check's deadline. A thread blocked in
the kernel (``open`` of a FIFO with no writer, a hung NFS ``stat``) cannot be interrupted
from Python, so it is *abandoned*: the check is reported ``failed``/``timeout`` for this
cycle, the other checks, the HTTP server and the runner loop go on, and while that thread
is still stuck the next cycles report the same timeout without starting a second copy. So
at most one thread per check can ever be stuck, and being daemon threads they never hold
up shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from selfcheck.config import Config
from selfcheck.context import CheckContext
from selfcheck.host.view import HostView
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
from selfcheck.registry import CheckSpec, required_ids

Clock = Callable[[], float]
STAGGER = 0.05


@dataclass(slots=True)
class _Attempt:
    """One run of one check in its own thread; ``outcome`` is set before ``done``."""

    spec: CheckSpec
    context: CheckContext
    started_at: float
    started_mono: float
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    finished_mono: float | None = None

    def __call__(self) -> None:
        try:
            self.outcome = self.spec.run(self.context)
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


class Runner:
    """Owns deadlines, timing, counters, ``required`` and status-change logs for all checks."""

    def __init__(
        self,
        config: Config,
        checks: Mapping[str, CheckSpec],
        clock: Clock = time.time,
        logger: logging.Logger | None = None,
        on_cycle: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.config = config
        self.on_cycle = on_cycle
        """Called by the background loop with each cycle's snapshot (the service checks)."""
        self.checks = dict(checks)
        self.required = required_ids(config, self.checks)
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
        """Run every (or every ``only``) check once and publish the snapshot.

        Checks start one after the other, each in its own thread, and the next starts as
        soon as the previous one finished or ``STAGGER`` seconds passed, whichever comes
        first. Started all at once, eleven threads contend for the interpreter lock at
        every system call, which cost a third more CPU and wall time per cycle
        (bench/cycle.py); staggered, a quick check runs alone, while a slow or hung one
        delays the others by ``STAGGER`` only and runs on, each under its own deadline.
        All of them share one ``HostView``: the host is read once per cycle, lazily.
        """
        wanted = [cid for cid in self.checks if only is None or cid in set(only)]
        host = HostView(self.config.host_proc, self.config.cgroup_root)
        attempts: dict[str, _Attempt | Outcome] = {}
        for cid in wanted:
            attempt = self._start(cid, host)
            attempts[cid] = attempt
            if isinstance(attempt, _Attempt):
                attempt.done.wait(STAGGER)
        results = {cid: self._finish(cid, a) for cid, a in attempts.items()}
        return self._publish(results)

    def _start(self, cid: str, host: HostView) -> _Attempt | Outcome:
        if cid in self.config.skip:
            return skipped(Reason.DISABLED, f"{cid} is switched off by SELFCHECK_SKIP.")
        stuck = self._stuck.get(cid)
        if stuck is not None and not stuck.done.is_set():
            return self._still_stuck(stuck)
        self._stuck.pop(cid, None)
        began = time.monotonic()
        context = CheckContext(self.config, host, began + self.config.check_timeout)
        attempt = _Attempt(self.checks[cid], context, self.clock(), began)
        threading.Thread(target=attempt, name=f"check-{cid}", daemon=True).start()
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

    def _finish(self, cid: str, attempt: _Attempt | Outcome) -> Result:
        now_mono = time.monotonic()
        if isinstance(attempt, Outcome):
            now = self.clock()
            return Result(cid, attempt, cid in self.required, 0.0, now, now)
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
        )

    def _publish(self, results: dict[str, Result]) -> Snapshot:
        previous = self._snapshot
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
            notes=self.config.agent_notes,
        )
        self._snapshot = snapshot
        return snapshot

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
