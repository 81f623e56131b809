"""Shared fixtures; the daemon fixtures live in ``tests/support/daemons.py``."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.daemons"]


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory every user can traverse (pytest's own ``tmp_path`` is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="selfcheck-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
