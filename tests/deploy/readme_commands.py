"""The README's two commands, copied from README.md, run on a fresh Debian 12 container.

    python -m tests.deploy.readme_commands        (root; dockerd, debootstrap; about 3 min)

Two users, each in its own container from the debootstrapped bookworm base that the image
tests use (.ci/base-image.sh, cached under /var/cache/selfcheck-test): root with no ``sudo``
installed (a container, a debug pod), and a user ``alice`` with password-less ``sudo``. In
both, ``python3-venv`` is purged first, so the command's ``apt-get`` really installs it from
the Debian mirror, and its ``pip install .`` really fetches the dependencies from PyPI (the
container shares this machine's network: ``--network host``). The first command is run
verbatim from the repository's root and must end in the report (exit 0, 1 or 2 with the
table and the verdict), never in ``sudo: command not found`` (127). The second one,
``.ci/run``, would start daemons the container cannot have: it is replaced by a stand-in
that prints its user id, so only the command's own part (finding or skipping ``sudo``) is
tried. Too slow for CI (apt and pip over the network); run by hand, output in the notes.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "local/bookworm-python:latest"
COMMAND_TIMEOUT = 600.0
_STAND_IN_CI = '#!/bin/sh\necho "ci stand-in ran as uid $(id -u)"\n'


def readme_commands(readme: Path = REPO / "README.md") -> list[str]:
    """The one-line commands of the README's first two ``sh`` blocks."""
    blocks = re.findall(r"```sh\n(.*?)\n```", readme.read_text(), flags=re.DOTALL)
    commands = [block.strip() for block in blocks[:2]]
    if len(commands) != 2 or any("\n" in command for command in commands):
        raise AssertionError(f"expected two one-line commands at the top of README.md: {blocks}")
    return commands


@dataclass(frozen=True)
class Outcome:
    who: str
    command: str
    code: int
    seconds: float
    output: str
    errors: str


def _tracked_files() -> bytes:
    """The repository's files as a tar stream (what a fresh clone has, no caches or venvs)."""
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
    ).stdout
    existing = b"\0".join(f for f in files.split(b"\0") if f and (REPO / f.decode()).exists())
    return subprocess.run(
        ["tar", "-C", str(REPO), "--null", "-T", "-", "-cf", "-"],
        input=existing,
        capture_output=True,
        check=True,
    ).stdout


class Container:
    """A long-lived container from the base image; ``sh`` runs a script in it."""

    def __init__(self, docker: list[str], env: dict[str, str], name: str) -> None:
        self.docker, self.env, self.name = docker, env, name
        self.remove()  # one left by an interrupted run
        self._run("run", "--detach", "--network", "host", "--name", name, BASE_IMAGE,
                  "sleep", "infinity")  # fmt: skip

    def _run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*self.docker, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=True,
        )

    def sh(self, script: str, user: str = "root") -> tuple[int, str, str, float]:
        """Exit code, standard output, standard error and seconds of ``script`` as ``user``."""
        began = time.monotonic()
        proc = subprocess.run(
            [*self.docker, "exec", "--user", user, "--workdir", "/", self.name,
             "bash", "-c", script],
            env=self.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False,
        )  # fmt: skip
        return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - began

    def copy_repo(self, home: str, owner: str) -> str:
        """The repository at ``home/selfcheck`` owned by ``owner``, with the CI stand-in."""
        target = f"{home}/selfcheck"
        unpack = f"mkdir -p {target} && tar -C {target} -xf -"
        self._run("exec", "-i", self.name, "sh", "-c", unpack, stdin=_tracked_files())
        stand_in = shlex.quote(_STAND_IN_CI)
        self.sh(f"printf %s {stand_in} > {target}/.ci/run && chown -R {owner} {target}")
        return target

    def remove(self) -> None:
        subprocess.run(
            [*self.docker, "rm", "--force", self.name], env=self.env, capture_output=True,
            timeout=60, check=False,
        )  # fmt: skip


def _fresh(container: Container) -> None:
    """Back to a machine without ``python3-venv`` (the debootstrapped base includes it)."""
    code, out, err, _ = container.sh(
        "apt-get purge -y -q python3-venv 'python3.*-venv' >/dev/null 2>&1; "
        "rm -rf /var/lib/apt/lists/*; ! python3 -m venv /tmp/probe-venv >/dev/null 2>&1"
    )
    if code != 0:
        raise AssertionError(f"python3-venv is still installed: {out}{err}")


def run_as(container: Container, who: str, commands: list[str]) -> list[Outcome]:
    home = "/root" if who == "root" else f"/home/{who}"
    repo = container.copy_repo(home, who)
    outcomes = []
    for command in commands:
        code, out, err, seconds = container.sh(f"cd {repo} && {command}", user=who)
        outcomes.append(Outcome(who, command, code, seconds, out, err))
    return outcomes


def judge(outcomes: list[Outcome]) -> list[str]:
    """What went wrong, if anything: the install ends in the report, the CI stand-in runs as 0."""
    problems = []
    install, suite = outcomes
    lines = install.output.splitlines()
    if install.code not in (0, 1, 2) or not any(line.startswith("STATUS ") for line in lines):
        tail = (install.output + install.errors)[-2000:]
        problems.append(f"{install.who}: install exited {install.code}: {tail}")
    elif not re.search(r"\. (ready|NOT READY: .*)\.$", lines[-1]):
        problems.append(f"{install.who}: the report's last line is not the verdict: {lines[-1]}")
    if suite.code != 0 or "ci stand-in ran as uid 0" not in suite.output:
        problems.append(f"{suite.who}: the suite exited {suite.code}: {suite.output}{suite.errors}")
    return problems


def try_both(docker: list[str], env: dict[str, str]) -> tuple[list[Outcome], list[str]]:
    subprocess.run(
        [str(REPO / ".ci" / "base-image.sh"), BASE_IMAGE], env=env, check=True,
        capture_output=True, timeout=COMMAND_TIMEOUT,
    )  # fmt: skip
    commands = readme_commands()
    outcomes: list[Outcome] = []
    root = Container(docker, env, "readme-root")
    try:
        _fresh(root)
        code, out, _, _ = root.sh("command -v sudo")
        if code == 0:
            raise AssertionError(f"the base image has sudo: {out}")
        outcomes += run_as(root, "root", commands)
    finally:
        root.remove()
    user = Container(docker, env, "readme-sudo")
    try:
        code, out, err, _ = user.sh(
            "apt-get update -q >/dev/null && apt-get install -y -q sudo >/dev/null && "
            "useradd --create-home --shell /bin/bash alice && "
            "echo 'alice ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/alice"
        )
        if code != 0:
            raise AssertionError(f"cannot install sudo: {out}{err}")
        _fresh(user)
        outcomes += run_as(user, "alice", commands)
    finally:
        user.remove()
    problems = judge(outcomes[:2]) + judge(outcomes[2:])
    return outcomes, problems


def main() -> int:
    import os

    from tests.support.daemons import start_dockerd

    daemon = start_dockerd()
    env = {**os.environ, "DOCKER_HOST": daemon.host, "DOCKER_BUILDKIT": "0",
           "DOCKER_CONFIG": str(daemon.directory / "cli")}  # fmt: skip
    try:
        outcomes, problems = try_both(["docker"], env)
    finally:
        daemon.stop()
        daemon.cleanup()
    for outcome in outcomes:
        print(f"== as {outcome.who}: exit {outcome.code} in {outcome.seconds:.0f} s")
        print(f"$ {outcome.command}")
        print("\n".join(outcome.errors.rstrip().splitlines()[-3:]))
        print("\n".join(outcome.output.rstrip().splitlines()[-8:]))
    print("\n".join(problems) or "both commands work as root without sudo and as a sudo user")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
