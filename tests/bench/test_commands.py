"""Every benchmark starts with the command ``bench/README.md`` gives, from the repository root.

The README's table names ``python bench/<name>.py``; run that way, Python puts ``bench/`` (not
the repository) first on ``sys.path``, so a script that imports ``bench._common`` or
``tests.support`` without its own path bootstrap stops with ``ModuleNotFoundError``. Each
script's ``--help`` is enough to prove the imports, and takes no root and no daemon.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "bench" / "README.md"


def documented_scripts() -> list[str]:
    """The ``bench/<name>.py`` paths of the README's ``python bench/...`` commands, in order."""
    found = re.findall(r"`python (bench/[a-z_]+\.py)\b", README.read_text())
    return list(dict.fromkeys(found))


def test_every_public_bench_script_is_documented() -> None:
    scripts = sorted(
        f"bench/{path.name}" for path in (REPO / "bench").glob("*.py") if path.name[0] != "_"
    )
    assert sorted(documented_scripts()) == scripts
    assert len(scripts) == 8


@pytest.mark.parametrize("script", documented_scripts())
def test_the_documented_command_starts(script: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, script, "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ")
