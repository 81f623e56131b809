"""Agent processes already on the machine before the tests start.

Tests that choose the node's Agent (node mode, the Operator's pods) look at every ``agent run``
on the machine, as selfcheck does; one left by an interrupted run of the suite, or a real
Agent, is seen by them too. The suite names them in its header, by the same rule selfcheck
recognises the Agent with (``selfcheck.host.agent.classify``), so a failure they cause
explains itself from the first line of the output.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from selfcheck.host.agent import classify, read_cmdline
from selfcheck.host.procfs import list_pids

SHOWN = 100  # characters of each command line in the header


def agents_running(proc: Path = Path("/proc")) -> list[str]:
    """``pid role: command line`` of each process selfcheck would take for an Agent's."""
    found = []
    for pid in list_pids(proc):
        try:
            argv = read_cmdline(proc, pid)
        except OSError:
            continue
        role = classify("", argv) if argv else None
        if role:
            found.append(f"{pid} {role}: {shlex.join(argv)[:SHOWN]}")
    return found


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
