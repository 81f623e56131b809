"""cgroups: the machine's real cgroup tree, and real cgroup mounts that are wrong in each way."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfcheck.checks import cgroups
from selfcheck.config import load
from selfcheck.context import CheckContext
from selfcheck.host.cgroup import count_container_cgroups, detect_layout
from selfcheck.host.procfs import read_mountinfo
from selfcheck.model import Reason, Status
from selfcheck.registry import known_ids
from tests.support.run import in_shell, selfcheck

pytestmark = pytest.mark.root
ROOT = "/sys/fs/cgroup"


def test_real_tree_finds_own_cgroup_and_reads_stats() -> None:
    run = selfcheck(["check", "--only", "cgroups", "--json"], {"DD_CONTAINER_CGROUP_ROOT": ROOT})
    result = run.check("cgroups")
    assert result["status"] == "ok", result
    layout = detect_layout(read_mountinfo(), ROOT).version
    assert result["details"]["layout"] == layout
    assert run.json["node"]["cgroup_version"] == layout
    stats = result["details"]["stats"]
    assert all(value.split()[-1].isdigit() for value in stats.values()), stats


def test_missing_root(tmp_path: Path) -> None:
    config = load(known_ids(), {"DD_CONTAINER_CGROUP_ROOT": str(tmp_path / "none")})
    outcome = cgroups.run(CheckContext.of(config))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ENOENT)
    assert "/host/sys/fs/cgroup" in outcome.remediation


def test_plain_directory_has_no_controllers(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    outcome = cgroups.run(
        CheckContext.of(load(known_ids(), {"DD_CONTAINER_CGROUP_ROOT": str(tmp_path)}))
    )
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.NO_CONTROLLERS)


def test_the_pods_own_subtree_instead_of_the_nodes_tree(tmp_path: Path) -> None:
    """Mounting a subtree (what a pod sees of itself) hides its own cgroup from the host path."""
    own = Path("/proc/self/cgroup").read_text()
    memory_path = next(line.split(":", 2)[2] for line in own.splitlines() if ":memory:" in line)
    top = memory_path.strip("/").split("/")[0]
    if not top:
        pytest.skip("this machine's test process sits in the root memory cgroup")
    run = in_shell(
        f"unshare -m --propagation private sh -c '"
        f"mount -t tmpfs none {tmp_path} && mkdir {tmp_path}/memory {tmp_path}/cpuacct && "
        f"mount --bind {ROOT}/memory/{top} {tmp_path}/memory && "
        f"mount --bind {ROOT}/cpuacct {tmp_path}/cpuacct && "
        f"exec $SELFCHECK check --only cgroups --json'",
        {"DD_CONTAINER_CGROUP_ROOT": str(tmp_path)},
    )
    result = run.check("cgroups")
    assert (result["status"], result["reason"]) == ("failed", "own_cgroup_not_found")
    assert "host cgroup namespace" in result["remediation"]
    assert run.code == 2


def test_an_emptydir_like_mount_has_no_controllers(tmp_path: Path) -> None:
    """A tmpfs where the cgroup tree should be: what a mistyped volume (emptyDir) gives."""
    run = in_shell(
        f"unshare -m --propagation private sh -c '"
        f"mount -t tmpfs none {tmp_path} && mkdir {tmp_path}/memory && "
        f"exec $SELFCHECK check --only cgroups --json'",
        {"DD_CONTAINER_CGROUP_ROOT": str(tmp_path)},
    )
    result = run.check("cgroups")
    assert (result["status"], result["reason"]) == ("failed", "no_controllers")
    assert "mountPropagation" in result["remediation"] or "hostPath" in result["remediation"]


def test_container_cgroups_are_counted_by_the_agents_rule(tmp_path: Path) -> None:
    cid = "a" * 64
    for rel in (
        f"kubepods/besteffort/pod1/{cid}",
        "system.slice/docker-" + "b" * 64 + ".scope",
        "kubepods/pod-only",
        "user.slice/session-1.scope",
    ):
        (tmp_path / rel).mkdir(parents=True)
    count, truncated = count_container_cgroups(tmp_path)
    assert (count, truncated) == (2, False)
