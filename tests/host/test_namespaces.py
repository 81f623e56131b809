"""Namespace readers against real namespaces made with ``unshare`` on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.host.namespaces import (
    INITIAL_CGROUP_NS_INODE,
    INITIAL_PID_NS_INODE,
    namespace_inode,
    read_pid_view,
)
from tests.support.run import REPO

# Prints what the readers say from inside the namespaces the test made.
PROBE = """
import json, sys
from pathlib import Path
from selfcheck.host.namespaces import namespace_inode, read_pid_view
try:
    view = read_pid_view(Path(sys.argv[1]))
    out = {"pid": view.pid, "nspid": list(view.nspid)}
except OSError as error:
    out = {"errno": error.errno}
out["inode"] = namespace_inode("pid")
print(json.dumps(out))
"""


def _run(script: str) -> dict[str, object]:
    """``"$PY" -c "$PROBE" DIR`` in ``script`` runs the probe; its last line is the answer."""
    proc = subprocess.run(
        ["sh", "-euc", script],
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(REPO),
            "PY": sys.executable,
            "PROBE": PROBE,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.fixture
def mount_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sc-ns-") as directory:
        yield Path(directory)


def test_inode_is_what_the_ns_link_names() -> None:
    inode = namespace_inode("pid")
    assert os.readlink("/proc/self/ns/pid") == f"pid:[{inode}]"
    assert os.readlink("/proc/self/ns/cgroup") == f"cgroup:[{namespace_inode('cgroup')}]"


def test_initial_inodes_are_the_kernels_constants() -> None:
    assert INITIAL_PID_NS_INODE == 4026531836
    assert INITIAL_CGROUP_NS_INODE == 4026531835


def test_own_procfs_sees_this_process_at_one_level() -> None:
    view = read_pid_view(Path("/proc"))
    assert view.nspid == (os.getpid(),)
    assert view.pid == os.getpid()
    assert view.levels == 1


def test_missing_namespace_kind_raises() -> None:
    with pytest.raises(FileNotFoundError):
        namespace_inode("no-such-namespace")


@pytest.mark.root
def test_child_pid_namespace_shows_two_nspid_entries(mount_dir: Path) -> None:
    """The machine's procfs, bind-mounted and read from a new PID namespace."""
    outer = namespace_inode("pid")
    out = _run(
        f"unshare -m --propagation private sh -c 'mount --bind /proc {mount_dir} && "
        f'unshare --pid --fork --mount-proc "$PY" -c "$PROBE" {mount_dir}\''
    )
    nspid = out["nspid"]
    assert isinstance(nspid, list)
    assert len(nspid) == 2
    assert nspid[1] == 1  # PID 1 inside its own namespace
    assert out["pid"] == nspid[0]  # the outer procfs shows its own level's PID
    assert out["inode"] != outer
    assert out["inode"] != INITIAL_PID_NS_INODE


@pytest.mark.root
def test_procfs_of_a_child_namespace_cannot_see_this_process(mount_dir: Path) -> None:
    """``self`` of a procfs owned by a namespace below ours dangles: ENOENT, not a crash."""
    out = _run(
        "unshare -m --propagation private sh -euc '"
        f'unshare --pid --fork --kill-child sh -c "mount -t proc proc {mount_dir} && '
        'exec sleep 30" </dev/null >/dev/null 2>&1 & child=$!; trap "kill -KILL $child" EXIT; '
        f"for i in $(seq 200); do [ -e {mount_dir}/1 ] && break; sleep 0.05; done; "
        f'"$PY" -c "$PROBE" {mount_dir}\''
    )
    assert out["errno"] == 2
