"""A short-lived helper that runs the checks with exactly the Agent's credentials.

Whether the Agent may open a file or connect to a socket depends on its uid, gid and
supplementary groups, and so does whether its root at ``/proc/<pid>/root`` can be followed at
all (fs/proc/base.c: the reader's fsuid and fsgid must match the target's, or it needs
``CAP_SYS_PTRACE``). When selfcheck's own identity differs (a root node-mode pod beside a
UID-100 Agent, a drifted sidecar, an Agent with fewer capabilities), the runner starts this
module as a child process, which first takes the Agent's uid, gid, groups and capability sets
(``selfcheck.host.become``; uid changes need ``CAP_SETUID``/``CAP_SETGID``) for one cycle.
The child enters the Agent's root itself, runs the requested checks under the same runner
(deadlines, stagger), prints their verdicts as one JSON object on stdout and exits.

Nothing but verdicts crosses back: the child's stderr is discarded (a traceback could quote a
value), and what it prints is the same JSON ``/status`` serves, which holds no environment
value beyond the allow-listed settings (``selfcheck.agentpod.ENV_ALLOWLIST``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfcheck.config import Config, load
from selfcheck.host.eyes import AGENT, Eyes
from selfcheck.model import Result, outcome_from_json
from selfcheck.registry import CheckSpec, all_checks

REQUEST_CAP = 64 * 1024
ANSWER_CAP = 4 * 1024 * 1024
START_ALLOWANCE = 3.0
"""Seconds for the child's interpreter start and imports, on top of the checks' deadlines."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The helper's cycle: verdicts and the Agent's settings, or why it could not look."""

    verdicts: Mapping[str, Result]
    required: frozenset[str]
    notes: tuple[str, ...]
    settings_from: str
    refused: str = ""
    """Non-empty when the helper fell back: the Agent's root could not be entered."""


def request(eyes: Eyes, ids: Sequence[str], config: Config) -> dict[str, Any]:
    """The cycle the helper runs: which checks, which Agent, and selfcheck's own settings
    (flags included) that its environment alone would not give it."""
    overrides = {
        "check_timeout": config.check_timeout,
        "sample_size": config.sample_size,
        "require": sorted(config.require),
        "skip": sorted(config.skip),
        "mode": config.mode,
        "dogstatsd_mode": config.dogstatsd_mode,
        "heartbeat_metric": config.heartbeat_metric,
        "pod_logs_dir": str(config.pod_logs_dir),
    }
    return {
        "proc": str(eyes.proc),
        "pid": eyes.pid,
        "ids": list(ids),
        "overrides": overrides,
        "credentials": eyes.credentials.to_json(),
        "started": eyes.pin.started if eyes.pin is not None else None,
    }


def run(eyes: Eyes, body: Mapping[str, Any], timeout: float, started: float) -> Answer:
    """Start the helper, which takes the Agent's credentials and capabilities first thing
    (``selfcheck.host.become``), and wait at most ``timeout`` seconds; ``started`` is when
    the runner asked, where its results' timing begins."""
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfcheck.asagent"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/",
            close_fds=True,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return refused(f"cannot start the helper as the Agent: {type(error).__name__}")
    try:
        out, _ = proc.communicate(json.dumps(body).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=1)
        return refused(f"the helper as the Agent did not answer within {timeout:g} s")
    return parse_answer(out[:ANSWER_CAP], proc.returncode, started)


def refused(why: str) -> Answer:
    return Answer({}, frozenset(), (), "", refused=why)


def _result(verdict: Mapping[str, Any], required: frozenset[str], started: float) -> Result:
    cid, took = str(verdict["check"]), float(verdict["duration_seconds"])
    outcome = outcome_from_json(verdict)
    return Result(cid, outcome, cid in required, took, started, started + took, AGENT)


def parse_answer(raw: bytes, code: int, started: float) -> Answer:
    """The child's JSON as the runner's results: in the Agent's view, each timed from
    ``started`` by its own duration. Anything else is a refusal that names only the exit code."""
    try:
        body = json.loads(raw)
        if body.get("refused"):
            return refused(str(body["refused"]))
        required = frozenset(str(c) for c in body["required"])
        results = [_result(v, required, started) for v in body["verdicts"]]
        return Answer(
            {r.check: r for r in results},
            required,
            tuple(str(n) for n in body["notes"]),
            str(body["settings_from"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return refused(f"the helper holding the Agent's credentials exited {code} without verdicts")


def _config(overrides: Mapping[str, Any]) -> tuple[dict[str, CheckSpec], Config]:
    """This environment's configuration with the parent's settings (its flags included)."""
    checks = all_checks()
    values = dict(overrides)
    values["require"] = frozenset(values.get("require", ()))
    values["skip"] = frozenset(values.get("skip", ()))
    values["pod_logs_dir"] = Path(values.get("pod_logs_dir", "/var/log/pods"))
    return checks, load(frozenset(checks)).with_overrides(**values)


def _serve_request(raw: bytes) -> dict[str, Any]:
    from selfcheck.host.become import become
    from selfcheck.host.eyes import Credentials, enter
    from selfcheck.runner import Runner

    asked = json.loads(raw)
    try:
        become(Credentials.from_json(asked["credentials"]))
    except OSError as error:
        return {"refused": f"cannot take the Agent's credentials: {error.strerror}"}
    checks, config = _config(dict(asked.get("overrides", {})))
    started = asked.get("started")  # the parent's pin: an Agent restarted since is not judged
    entered = enter(Path(asked["proc"]), int(asked["pid"]), str(started) if started else None)
    if isinstance(entered, str) or entered.helper:
        return {"refused": entered if isinstance(entered, str) else "identity still differs"}
    runner = Runner(config, checks, look=lambda: entered)
    snapshot = runner.run_cycle(asked["ids"])
    if runner.agent_changed:  # the parent re-checks too, and runs the cycle again
        return {"refused": runner.agent_changed}
    verdicts = []
    for result in snapshot.results.values():
        body = result.to_json()
        body["node_info"] = dict(result.outcome.node_info)
        verdicts.append(body)
    return {
        "verdicts": verdicts,
        "required": sorted(snapshot.required),
        "notes": list(snapshot.notes),
        "settings_from": runner.cycle_config.settings_from,
    }


def main() -> None:
    """The child: one request on stdin, one JSON answer on stdout, nothing on stderr."""
    try:
        answer = _serve_request(sys.stdin.buffer.read(REQUEST_CAP))
    except Exception as error:  # never a traceback: the parent shows only this
        answer = {"refused": f"the helper failed: {type(error).__name__}"}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    os._exit(0)  # checks abandoned in a blocked system call must not hold the exit


if __name__ == "__main__":
    main()
