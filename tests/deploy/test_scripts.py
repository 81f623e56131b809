"""The shell scripts this part ships: the Helm post-renderer and the CI helpers."""

from __future__ import annotations

from tests.deploy.tools import K8S, REPO, run, tool

SCRIPTS = (
    K8S / "helm" / "post-renderer.sh",
    REPO / ".ci" / "base-image.sh",
    REPO / ".ci" / "deploy-tools.sh",
    REPO / ".ci" / "ddchecks-venv.sh",
)


def test_shellcheck_clean() -> None:
    run([tool("shellcheck"), "--severity", "style", *map(str, SCRIPTS)])


def test_scripts_are_executable() -> None:
    for script in SCRIPTS:
        assert script.stat().st_mode & 0o111, script
