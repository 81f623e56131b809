"""Identity and mount readers on fixture text and on real processes and mounts."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from selfcheck.host.identity import (
    identity_from_status,
    mount_writable,
    own_mount,
    read_identity,
    submounts,
)
from selfcheck.host.procfs import parse_mountinfo, parse_status, read_mountinfo
from selfcheck.host.root import Root, pinned
from tests.support.seccomp import with_seccomp

MOUNTINFO = """\
1 0 254:0 / / ro,relatime - overlay overlay rw,lowerdir=/l
2 1 0:21 / /host/proc ro,nosuid - proc proc rw
3 1 0:28 / /host/sys/fs/cgroup ro,relatime - tmpfs tmpfs rw,mode=755
4 3 0:29 / /host/sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
5 3 0:30 / /host/sys/fs/cgroup/cpu ro,relatime - cgroup cgroup rw,cpu
6 1 254:0 /etc/passwd /etc/passwd rw,relatime - ext4 /dev/vda rw
7 1 254:0 /etc/os-release /host/etc/os-release rw,relatime - ext4 /dev/vda ro
"""


def test_identity_from_a_fixture_status() -> None:
    status = parse_status(
        "Uid:\t100\t100\t100\t100\nGid:\t101\t0\t101\t101\nGroups:\t999 5\n"
        "NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t3\n"
        "CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t0000000000000400\nCapAmb:\t0\n"
    )
    who = identity_from_status(status)
    assert (who.uid, who.gid, who.groups) == (100, 0, (999, 5))
    assert (who.no_new_privs, who.seccomp) == (1, 2)
    assert who.seccomp_mode == "filter"
    assert who.capabilities.named()["CapBnd"] == ["CAP_NET_BIND_SERVICE"]


def test_an_old_kernel_without_the_lines_claims_nothing() -> None:
    who = identity_from_status(parse_status("Uid:\tgarbage\nName:\tagent\n"))
    assert who.uid is None and who.no_new_privs is None and who.seccomp is None
    assert who.seccomp_mode == "unknown"
    assert len(who.capabilities.garbled) == 5


def test_own_mount_requires_the_path_to_be_the_mount_point() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    proc = own_mount(Path("/host/proc"), mounts)
    assert proc is not None and not mount_writable(proc)
    assert own_mount(Path("/host/proc/1"), mounts) is None  # lives on it, is not one
    assert own_mount(Path("/etc/hostname"), mounts) is None
    passwd = own_mount(Path("/etc/passwd"), mounts)
    assert passwd is not None and mount_writable(passwd)
    release = own_mount(Path("/host/etc/os-release"), mounts)
    assert release is not None and not mount_writable(release)  # read-only superblock


def test_submounts_carry_their_own_flags() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    cgroups = own_mount(Path("/host/sys/fs/cgroup"), mounts)
    assert cgroups is not None and not mount_writable(cgroups)
    below = submounts(cgroups, mounts)
    assert [m.mount_point for m in below if mount_writable(m)] == ["/host/sys/fs/cgroup/memory"]


def test_this_process() -> None:
    who = read_identity()
    assert who.uid is not None and who.capabilities.garbled == ()
    assert own_mount(Path("/"), read_mountinfo()) is not None


def _identity_of(argv: list[str]) -> dict[str, str]:
    out = subprocess.run(
        [*argv, "cat", "/proc/self/status"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return parse_status(out)


@pytest.mark.root
def test_no_new_privs_of_a_real_process() -> None:
    assert identity_from_status(_identity_of(["setpriv", "--no-new-privs"])).no_new_privs == 1
    assert identity_from_status(_identity_of(["setpriv"])).no_new_privs == 0


@pytest.mark.root
def test_seccomp_filter_of_a_real_process() -> None:
    who = identity_from_status(_identity_of(with_seccomp([])))
    assert (who.seccomp, who.seccomp_mode) == (2, "filter")


@pytest.mark.root
def test_the_filter_is_enforced_not_only_reported() -> None:
    if platform.machine() != "x86_64":
        pytest.skip("the test filter denies getpgid only on x86-64")
    probe = with_seccomp([sys.executable, "-c", "import os; os.getpgid(0)"])
    done = subprocess.run(probe, capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode != 0
    assert "Operation not permitted" in done.stderr


@pytest.mark.root
def test_read_only_bind_mount_in_a_real_mount_namespace(tmp_path: Path) -> None:
    target = tmp_path / "passwd"
    target.touch()
    script = (
        f"mount --bind /etc/passwd {target} && mount -o remount,bind,ro {target} && "
        f"cat /proc/self/mountinfo"
    )
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    mounts = parse_mountinfo(out)
    mount = own_mount(target, mounts)
    assert mount is not None and mount.root == "/etc/passwd"
    assert not mount_writable(mount)
    assert own_mount(target, read_mountinfo()) is None  # gone outside the namespace


def test_own_mount_resolves_the_path_inside_the_audited_containers_root(tmp_path: Path) -> None:
    """The Agent's image links ``/host/etc`` to ``/node/etc`` (absolute) and its table mounts
    ``/node/etc/os-release``: the audit finds that mount only by resolving in the Agent's
    root; in selfcheck's own root the link does not exist and the mount would be missed."""
    agent_root = tmp_path / "agent-root"
    (agent_root / "node/etc").mkdir(parents=True)
    (agent_root / "node/etc/os-release").write_text("ID=node\n")
    (agent_root / "host").mkdir()
    (agent_root / "host/etc").symlink_to("/node/etc")
    mounts = parse_mountinfo(
        "1 0 254:0 / / ro,relatime - overlay overlay rw\n"
        "7 1 254:0 /etc/os-release /node/etc/os-release ro,relatime - ext4 /dev/vda rw\n"
    )
    path = Path("/host/etc/os-release")
    for root in (Root(agent_root), pinned(agent_root)):
        found = own_mount(path, mounts, root)
        assert found is not None and found.mount_id == 7
    assert own_mount(path, mounts) is None
