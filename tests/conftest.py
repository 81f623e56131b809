"""Shared fixtures; the daemon fixtures live in ``tests/support/daemons.py``."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.strays import header

pytest_plugins = ["tests.support.daemons"]


BEFORE = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    """Look for Agent processes once, before any test starts one of its own."""
    config.stash[BEFORE] = header()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """First in the output, before any test has run or failed."""
    return config.stash[BEFORE]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Under ``-q`` (the README's command) there is no header: then beside the failures."""
    lines = config.stash[BEFORE]
    if len(lines) > 1 and config.get_verbosity() < 0:
        terminalreporter.section("Agent processes before the tests")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory every user can traverse (pytest's own ``tmp_path`` is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="selfcheck-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
