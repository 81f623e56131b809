"""Agent processes already on the machine before the tests start.

Tests that choose the node's Agent (node mode, the Operator's pods) look at every ``agent run``
on the machine, as selfcheck does; one left by an interrupted run of the suite, or a real
Agent, is seen by them too. The suite names them in its header, by the same rule selfcheck
recognises the Agent with (``selfcheck.host.agent``'s scan), so a failure they cause
explains itself from the first line of the output.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from pathlib import Path

from selfcheck.host.agent import _scan, read_cmdline

SHOWN = 100  # characters of each command line in the header
SCAN_SECONDS = 10.0  # the scan's own deadline; a machine's processes take milliseconds


def agents_running(proc: Path = Path("/proc")) -> list[str]:
    """``pid role: command line`` of each process selfcheck would take for an Agent's: its own
    scan (``selfcheck.host.agent._scan``), given time to list every process."""
    found, _, _ = _scan(proc, time.monotonic() + SCAN_SECONDS)
    lines = []
    for pid, role in found:
        with contextlib.suppress(OSError):
            lines.append(f"{pid} {role}: {shlex.join(read_cmdline(proc, pid))[:SHOWN]}")
    return lines


def header(proc: Path = Path("/proc")) -> list[str]:
    """The lines ``pytest_report_header`` prints."""
    found = agents_running(proc)
    if not found:
        return ["Agent processes before the tests: none"]
    return [
        f"Agent processes before the tests: {len(found)}, which tests that choose the node's "
        "Agent also see (stop any an interrupted run left):",
        *(f"  {line}" for line in found),
    ]
