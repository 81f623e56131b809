"""Where the deployment tests find their linters and validators, and how they run them.

The PyPI-shipped tools (kubectl with its built-in kustomize, kubernetes-validate, checkov,
hadolint) live in their own virtual environment, made by ``.ci/deploy-tools.sh``, so that
checkov's pinned dependencies never meet the project's. ``promtool`` comes from Debian's
``prometheus`` package. A missing tool skips the test with the reason on a developer machine
and fails it in CI (``CI`` set), where ``.ci/run`` installs every one of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
DEFAULT_TOOLS_VENV = Path("/opt/selfcheck-deploy-tools")


def missing(reason: str) -> None:
    """Skip on a developer machine, fail in CI: CI must never pass by skipping."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it: see .ci/deploy-tools.sh)", pytrace=False)
    pytest.skip(reason)


def tool(name: str) -> str:
    """The path of ``name``: the tools venv first (``SELFCHECK_DEPLOY_TOOLS``), then ``PATH``."""
    venv = Path(os.environ.get("SELFCHECK_DEPLOY_TOOLS", DEFAULT_TOOLS_VENV))
    candidate = venv / "bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        missing(f"{name} is not installed")
        raise AssertionError("unreachable")  # pragma: no cover
    return found


def run(
    argv: list[str],
    *,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool and fail the test with its whole output when it exits non-zero."""
    result = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}",
            pytrace=False,
        )
    return result
