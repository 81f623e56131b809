"""Run the real ``selfcheck`` CLI in a subprocess, optionally inside namespaces or as another user.

Tests assert what a user sees (exit code, JSON report), so they go through the CLI exactly
as ``kubectl exec ... selfcheck check`` would. ``cwd`` is ``/`` so that an unprivileged user
never needs access to the work tree: the package is imported from the environment.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AGENT_UID, AGENT_GID = 100, 101
AS_AGENT_USER = ("setpriv", f"--reuid={AGENT_UID}", f"--regid={AGENT_GID}", "--clear-groups")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    def check(self, cid: str) -> dict[str, Any]:
        """The named check's result from a ``check --json`` report."""
        for result in self.json["checks"]:
            if result["check"] == cid:
                return dict(result)
        raise AssertionError(f"{cid} not in report: {self.stdout[:2000]} {self.stderr[:2000]}")


def python_command() -> list[str]:
    return [sys.executable, "-m", "selfcheck"]


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: nothing from the developer's shell leaks into the check."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }
    env.update(extra or {})
    return env


def selfcheck(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
    timeout: float = 60,
) -> Run:
    """Run ``selfcheck ARGS`` behind ``prefix`` (e.g. ``AS_AGENT_USER`` or an ``unshare``)."""
    proc = subprocess.run(
        [*prefix, *python_command(), *args],
        env=base_env(env),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def in_shell(script: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> Run:
    """Run a root shell script (mounts, unshare); ``$SELFCHECK`` expands to the CLI command."""
    full = {"SELFCHECK": shlex.join(python_command()), **(env or {})}
    proc = subprocess.run(
        ["sh", "-euc", script],
        env=base_env(full),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def readable_by_agent_user(path: Path) -> bool:
    """Whether UID 100 can reach ``path`` (the repo may live under a private home)."""
    probe = subprocess.run(
        [*AS_AGENT_USER, "test", "-r", str(path)], check=False, capture_output=True
    )
    return probe.returncode == 0


def stop(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """SIGTERM, as the kubelet stops a container, then SIGKILL if it has not exited in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
