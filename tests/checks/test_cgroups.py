"""cgroups: the machine's real cgroup tree, in every namespace shape today's nodes have.

The kernel does the work here: private cgroup namespaces come from ``unshare --cgroup``, a
container's own view of its cgroup from a cgroup mount made inside that namespace, and a
cgroup v2 host tree from the machine's unified hierarchy bound where the host tree goes
(a bind mount). The expected values come from the kernel too (``statfs``,
``/proc/self/cgroup`` read outside selfcheck), never from selfcheck's own detector.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.checks import cgroups
from selfcheck.context import CheckContext
from selfcheck.host.cgroup import walk_cgroup_tree
from selfcheck.model import Reason, Status
from tests.support.configs import make_config
from tests.support.run import Run, in_shell, selfcheck

pytestmark = pytest.mark.root
ROOT = Path("/sys/fs/cgroup")
UNIFIED = ROOT / "unified"
CGROUP2_MAGIC_NAME = "cgroup2fs"
ONLY = "check --only cgroups --json"


def _kernel_layout() -> str:
    """What the kernel says, independently of selfcheck: statfs of the mount points."""
    if os.statvfs(ROOT) and _fstype(ROOT) == CGROUP2_MAGIC_NAME:
        return "v2"
    return "hybrid" if UNIFIED.is_dir() and _fstype(UNIFIED) == CGROUP2_MAGIC_NAME else "v1"


def _fstype(path: Path) -> str:
    import subprocess

    return subprocess.run(
        ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


def _own_line(controller: str) -> str:
    """This test process's path in one hierarchy ('' for v2), read from the kernel."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controller == "" and controllers == ""):
            return path
    raise AssertionError(f"no {controller!r} line in /proc/self/cgroup")


def _result(run: Run) -> dict[str, object]:
    result = run.check("cgroups")
    assert isinstance(result["details"], dict)
    return result


needs_unified = pytest.mark.skipif(
    not UNIFIED.is_dir(), reason="no cgroup v2 hierarchy at /sys/fs/cgroup/unified"
)


@pytest.fixture
def container_cgroup() -> Iterator[str]:
    """A directory named like a container (64 hex) in the unified hierarchy, then removed."""
    if not UNIFIED.is_dir():
        pytest.skip("no unified hierarchy")
    name = secrets.token_hex(32)
    path = UNIFIED / "selfcheck-test" / name
    path.mkdir(parents=True)
    try:
        yield name
    finally:
        path.rmdir()
        path.parent.rmdir()


def test_the_machines_tree_in_the_host_cgroup_namespace() -> None:
    run = selfcheck(
        ["check", "--only", "cgroups", "--json"], {"DD_CONTAINER_CGROUP_ROOT": "/sys/fs/cgroup"}
    )
    result = _result(run)
    details = result["details"]
    assert isinstance(details, dict)
    assert (result["status"], details["layout"]) == ("ok", _kernel_layout()), result
    assert run.json["node"]["cgroup_version"] == _kernel_layout()
    assert details["own_cgroup"] == _own_line("memory")
    assert (details["found_by"], details["cgroup_namespace"]) == ("path", "host")
    assert str(details["stats"]["memory.usage_in_bytes"]).isdigit()


def test_a_private_cgroup_namespace_is_found_by_membership_and_is_ok() -> None:
    """``unshare --cgroup``: /proc/self/cgroup reads '/', the tree is still the node's."""
    run = in_shell(
        f"exec unshare --cgroup $SELFCHECK {ONLY}", {"DD_CONTAINER_CGROUP_ROOT": str(ROOT)}
    )
    result = _result(run)
    details = result["details"]
    assert isinstance(details, dict)
    assert (result["status"], result["reason"]) == ("ok", "ok"), result
    assert details["cgroup_namespace"] == "private"
    assert details["own_cgroup"] == _own_line("memory")
    assert details["found_by"] == "its cgroup.procs"
    assert "private cgroup namespace" in str(result["message"])
    assert run.code == 0


def test_a_containers_own_cgroup_mount_is_found_by_its_inode(tmp_path: Path) -> None:
    """What ``docker run --cgroupns private`` gives on v1: the container mounts the memory
    hierarchy inside its namespace, so that mount's root is its own cgroup, whose inode the
    host tree holds (datadog-go statsd/container_linux.go)."""
    own = tmp_path / "own-memory"
    run = in_shell(
        "exec unshare --cgroup --mount --propagation private sh -euc '"
        f"mkdir -p {own} && mount -t cgroup -o memory cgroup {own} && exec $SELFCHECK {ONLY}'",
        {"DD_CONTAINER_CGROUP_ROOT": str(ROOT)},
    )
    result = _result(run)
    details = result["details"]
    assert isinstance(details, dict)
    assert (result["status"], details["found_by"]) == ("ok", f"the inode of {own}"), result
    assert details["own_cgroup"] == _own_line("memory")


def test_a_tree_that_is_the_containers_own_view_fails(tmp_path: Path) -> None:
    """The pod's own cgroup mounted where the node's tree belongs: its top is this process's
    cgroup, so the Agent would see no other container."""
    run = in_shell(
        "exec unshare --cgroup --mount --propagation private sh -euc '"
        f"mount -t tmpfs none {tmp_path} && mkdir {tmp_path}/memory {tmp_path}/pids && "
        f"mount -t cgroup -o memory cgroup {tmp_path}/memory && "
        f"mount -t cgroup -o pids cgroup {tmp_path}/pids && exec $SELFCHECK {ONLY}'",
        {"DD_CONTAINER_CGROUP_ROOT": str(tmp_path)},
    )
    result = _result(run)
    assert (result["status"], result["reason"]) == ("failed", "own_cgroup_not_found"), result
    assert "this container's own cgroup" in str(result["message"])
    assert "/host/sys/fs/cgroup" in str(result["remediation"])
    assert run.code == 2


@needs_unified
def test_a_cgroup_v2_host_tree(tmp_path: Path, container_cgroup: str) -> None:
    """The unified hierarchy as the host tree: layout v2, own cgroup by its 0:: path, the
    container directory counted; memory.current is absent here (memory is bound to v1) and
    only noted, since cgroup.procs and cpu.stat prove the tree."""
    run = in_shell(
        "exec unshare --mount --propagation private sh -euc '"
        f"mount --bind {UNIFIED} {tmp_path} && mount -o remount,bind,ro {tmp_path} && "
        f"exec $SELFCHECK {ONLY}'",
        {"DD_CONTAINER_CGROUP_ROOT": str(tmp_path)},
    )
    result = _result(run)
    details = result["details"]
    assert isinstance(details, dict)
    assert (result["status"], details["layout"]) == ("ok", "v2"), result
    assert details["own_cgroup"] == _own_line("")
    assert details["container_cgroups"] >= 1
    assert "cpu.stat" in details["stats"]
    if not (UNIFIED / "memory.stat").exists():
        assert any("memory.current" in item for item in details["not_accounted"])
    assert run.json["node"]["cgroup_version"] == "v2"


@needs_unified
def test_a_cgroup_v2_host_tree_from_a_private_namespace(tmp_path: Path) -> None:
    """v2 with a private cgroup namespace (containerd's default): the process is moved into
    a container-named cgroup of the unified tree, then gets its own namespace and cgroup2
    mount there; found by the inode of that mount."""
    host, own = tmp_path / "host", tmp_path / "own"
    name = secrets.token_hex(32)
    leaf = UNIFIED / "selfcheck-test" / name
    leaf.mkdir(parents=True)
    try:
        run = in_shell(
            f"echo $$ > {leaf}/cgroup.procs && "
            "exec unshare --cgroup --mount --propagation private sh -euc '"
            f"mkdir -p {host} {own} && mount --bind {UNIFIED} {host} && "
            f"mount -t cgroup2 cgroup2 {own} && exec $SELFCHECK {ONLY}'",
            {"DD_CONTAINER_CGROUP_ROOT": str(host)},
        )
    finally:
        leaf.rmdir()
        leaf.parent.rmdir()
    result = _result(run)
    details = result["details"]
    assert isinstance(details, dict)
    assert (result["status"], details["layout"]) == ("ok", "v2"), result
    assert (details["cgroup_namespace"], details["found_by"]) == ("private", f"the inode of {own}")
    assert details["own_cgroup"] == f"/selfcheck-test/{name}"
    assert details["container_cgroups"] >= 1


def test_the_pods_own_subtree_instead_of_the_nodes_tree(tmp_path: Path) -> None:
    """A subtree (what a pod sees of itself) in the host cgroup namespace: the absolute path
    of /proc/self/cgroup is not there, so the tree is not the node's."""
    memory_path = _own_line("memory")
    top = memory_path.strip("/").split("/")[0]
    if not top:
        pytest.skip("this machine's test process sits in the root memory cgroup")
    run = in_shell(
        f"unshare -m --propagation private sh -c '"
        f"mount -t tmpfs none {tmp_path} && mkdir {tmp_path}/memory {tmp_path}/cpuacct && "
        f"mount --bind {ROOT}/memory/{top} {tmp_path}/memory && "
        f"mount --bind {ROOT}/cpuacct {tmp_path}/cpuacct && "
        f"exec $SELFCHECK {ONLY}'",
        {"DD_CONTAINER_CGROUP_ROOT": str(tmp_path)},
    )
    result = _result(run)
    assert (result["status"], result["reason"]) == ("failed", "own_cgroup_not_found")
    assert "not the pod's own view" in str(result["remediation"])
    assert run.code == 2


def test_one_v1_controller_alone_is_no_layout_for_the_agent(tmp_path: Path) -> None:
    """reader_detector.go's isCgroup1 needs more than one controller mounted."""
    run = in_shell(
        f"unshare -m --propagation private sh -c '"
        f"mount -t tmpfs none {tmp_path} && mkdir {tmp_path}/memory && "
        f"mount --bind {ROOT}/memory {tmp_path}/memory && exec $SELFCHECK {ONLY}'",
        {"DD_CONTAINER_CGROUP_ROOT": str(tmp_path)},
    )
    result = _result(run)
    assert (result["status"], result["reason"]) == ("failed", "no_controllers"), result
    assert "fewer than two cgroup v1 controllers" in str(result["message"])


def test_an_emptydir_like_mount_has_no_controllers(tmp_path: Path) -> None:
    """A tmpfs where the cgroup tree should be: what a mistyped volume (emptyDir) gives."""
    run = in_shell(
        f"unshare -m --propagation private sh -c '"
        f"mount -t tmpfs none {tmp_path} && mkdir {tmp_path}/memory && "
        f"exec $SELFCHECK {ONLY}'",
        {"DD_CONTAINER_CGROUP_ROOT": str(tmp_path)},
    )
    result = _result(run)
    assert (result["status"], result["reason"]) == ("failed", "no_controllers")
    assert "hostPath" in str(result["remediation"])


def test_missing_root(tmp_path: Path) -> None:
    config = make_config(DD_CONTAINER_CGROUP_ROOT=tmp_path / "none")
    outcome = cgroups.run(CheckContext.of(config))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ENOENT)
    assert str(tmp_path / "none") in outcome.message
    assert "/host/sys/fs/cgroup" in outcome.remediation


def test_in_a_container_the_missing_mount_is_named_not_replaced() -> None:
    config = make_config(SELFCHECK_CONTAINERIZED="true")
    if Path("/host/sys/fs/cgroup").exists():
        pytest.skip("this machine has a /host/sys/fs/cgroup")
    outcome = cgroups.run(CheckContext.of(config))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ENOENT)
    assert "/host/sys/fs/cgroup" in outcome.message
    assert "container's own, so it is not read in its place" in outcome.message


def test_container_cgroups_are_counted_by_the_agents_rule(tmp_path: Path) -> None:
    cid = "a" * 64
    for rel in (
        f"kubepods/besteffort/pod1/{cid}",
        "system.slice/docker-" + "b" * 64 + ".scope",
        "system.slice/crio-conmon-" + "c" * 64 + ".scope",
        "kubepods/pod-only",
        "user.slice/session-1.scope",
    ):
        (tmp_path / rel).mkdir(parents=True)
    tree = walk_cgroup_tree(str(tmp_path))
    assert sorted(d.name for d in tree.container_dirs()) == [cid, "docker-" + "b" * 64 + ".scope"]
    assert not tree.truncated
    by_inode = tree.by_inode()
    assert by_inode[(tmp_path / "kubepods/pod-only").stat().st_ino].path == "/kubepods/pod-only"
