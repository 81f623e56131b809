"""``tests.support.strays``: the suite's header names an ``agent run`` it did not start."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.run import REPO, stop
from tests.support.strays import agents_running, header

WAITS = "import sys; print('ready', flush=True); sys.stdin.read()"


@pytest.fixture
def stray() -> Iterator[subprocess.Popen[str]]:
    """A process whose command line is ``agent -c ... run``, as a stand-in left running."""
    proc = subprocess.Popen(
        ["agent", "-c", WAITS, "run"],
        executable=sys.executable,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        stop(proc)
        proc.communicate(timeout=10)


def test_a_running_agent_is_named_with_its_pid_and_role(stray: subprocess.Popen[str]) -> None:
    lines = header()
    assert lines[0].startswith("Agent processes before the tests: ")
    assert f"  {stray.pid} agent: agent -c " in "\n".join(lines)
    assert any(line.startswith(f"{stray.pid} agent: ") for line in agents_running())


def test_an_agent_that_has_ended_is_not_named(stray: subprocess.Popen[str]) -> None:
    def named() -> bool:
        return any(line.startswith(f"{stray.pid} agent: ") for line in agents_running())

    assert named()
    stray.communicate(timeout=10)
    assert not named()


@pytest.mark.parametrize("quiet", [[], ["-q"]], ids=["header", "quiet"])
def test_pytest_names_it_in_a_real_session(stray: subprocess.Popen[str], quiet: list[str]) -> None:
    """The hooks are wired: a real pytest session names the stray in its header, or under ``-q``
    (the README's command, which prints no header) in a section of its summary."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *quiet,
            "-p",
            "no:cacheprovider",
            "--collect-only",
            __file__,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert f"  {stray.pid} agent: agent -c " in run.stdout, run.stdout[-2000:]
    section = "Agent processes before the tests ="
    assert (section in run.stdout) == bool(quiet), run.stdout[-2000:]
