"""The README's two commands, verbatim, as root without sudo and as a sudo user (Debian 12).

The work is in ``tests/deploy/readme_commands.py`` (also a script); about 30 s here: apt
installs ``python3-venv`` from the Debian mirror and pip fetches the dependencies, both
over this machine's network (the only network a container here has).
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.deploy.readme_commands import readme_commands, try_both
from tests.deploy.tools import missing
from tests.support.daemons import DockerDaemon

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_the_readme_has_two_one_line_commands_that_do_not_assume_sudo() -> None:
    prefix = "SUDO=$(command -v sudo || true); "
    for command in readme_commands():
        assert command.startswith(prefix)
        rest = command.removeprefix(prefix)
        assert "$SUDO " in rest and "sudo" not in rest.replace("$SUDO ", "")


def test_the_readme_commands_work_as_root_without_sudo_and_as_a_sudo_user(
    dockerd_daemon: DockerDaemon,
) -> None:
    for binary in ("docker", "debootstrap"):
        if shutil.which(binary) is None:
            missing(f"{binary} is not installed")
    env = {
        **os.environ,
        "DOCKER_HOST": dockerd_daemon.host,
        "DOCKER_BUILDKIT": "0",
        "DOCKER_CONFIG": str(dockerd_daemon.directory / "cli"),
    }
    outcomes, problems = try_both(["docker"], env)
    assert problems == []
    assert [(o.who, o.code) for o in outcomes][1::2] == [("root", 0), ("alice", 0)]
    assert all(o.code == 2 for o in outcomes[0::2])  # no Agent in the container: exit 2
