"""The host sample as ``selfcheck.host.sampling`` reads it, on this machine's real processes."""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.host.sampling import exiting, sample_all

CGROUP = Path("/sys/fs/cgroup")
HIERARCHIES = ("memory", "unified")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root"),
    pytest.mark.skipif(
        not all((CGROUP / h).is_dir() for h in HIERARCHIES),
        reason="needs cgroup v1's memory hierarchy beside the unified one (hybrid layout)",
    ),
]


@pytest.fixture
def container() -> Iterator[str]:
    """A container's cgroup as the kubelet's cgroupfs driver names it, in both hierarchies."""
    path = f"kubepods/besteffort/pod{uuid.uuid4()}/{secrets.token_hex(32)}"
    for hierarchy in HIERARCHIES:
        (CGROUP / hierarchy / path).mkdir(parents=True)
    try:
        yield path
    finally:
        for hierarchy in HIERARCHIES:
            for level in (path, str(Path(path).parent)):
                (CGROUP / hierarchy / level).rmdir()


def _in(path: str, then: str) -> list[str]:
    joins = "; ".join(f"echo $$ > {CGROUP / h / path}/cgroup.procs" for h in HIERARCHIES)
    return ["sh", "-c", f"{joins}; {then}"]


def test_a_dead_container_process_is_not_a_client_the_agent_cannot_map(container: str) -> None:
    """A zombie of a container shows ``/`` on its v1 lines while its unified line keeps the
    container's path: left in the sample it was one more "unmapped" container process."""
    live = subprocess.Popen(_in(container, "echo ready; exec sleep 60"), stdout=subprocess.PIPE)
    dead = subprocess.Popen(_in(container, "exit 0"))
    try:
        assert live.stdout is not None and live.stdout.readline() == b"ready\n"
        os.waitid(os.P_PID, dead.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
        assert exiting(Path("/proc"), dead.pid) and not exiting(Path("/proc"), live.pid)
        sample = sample_all(Path("/proc"), 1, 10, host_pids=[live.pid, dead.pid])
    finally:
        live.kill()
        live.wait()
        dead.wait()
    assert (sample.in_containers, sample.resolved, sample.unreadable) == (1, 1, 1)
    assert sample.ratio == 1.0
