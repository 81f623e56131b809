"""procfs: the machine's real /proc, and real procfs mounts that are hidden, foreign or absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from selfcheck.checks import procfs
from selfcheck.context import CheckContext
from selfcheck.model import Reason, Status
from tests.support.configs import make_config
from tests.support.hosttree import proc_tree
from tests.support.run import AS_AGENT_USER, in_shell, selfcheck

pytestmark = pytest.mark.root


def test_real_proc_is_the_hosts() -> None:
    run = selfcheck(["check", "--only", "procfs", "--json"], {"HOST_PROC": "/proc"})
    result = run.check("procfs")
    assert run.code == 0, run.stdout
    assert result["status"] == "ok"
    assert result["details"]["initial_pid_namespace"] is True
    visible = result["figures"]["visible_processes"]
    assert visible == pytest.approx(len([p for p in os.listdir("/proc") if p.isdigit()]), abs=20)
    assert visible > 3


def test_missing_path_is_enoent_with_the_mount_to_add(tmp_path: Path) -> None:
    outcome = procfs.run(CheckContext.of(make_config(HOST_PROC=tmp_path / "absent")))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ENOENT)
    assert str(tmp_path / "absent") in outcome.message
    assert "(ENOENT)" in outcome.message
    assert "procdir" in outcome.remediation and "/host/proc" in outcome.remediation


def test_a_plain_directory_is_not_procfs(tmp_path: Path) -> None:
    proc_tree(tmp_path, {1: {"status": "Name:\tsystemd\n"}})
    outcome = procfs.run(CheckContext.of(make_config(HOST_PROC=tmp_path)))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.NOT_PROCFS)


def test_unreadable_directory_is_eacces_for_the_agent_user(open_tmp: Path) -> None:
    locked = open_tmp / "proc"
    locked.mkdir(mode=0o000)
    run = selfcheck(
        ["check", "--only", "procfs", "--json"], {"HOST_PROC": str(locked)}, prefix=AS_AGENT_USER
    )
    result = run.check("procfs")
    assert run.code == 2
    assert (result["status"], result["reason"]) == ("failed", "eacces")
    assert "(EACCES)" in result["message"]
    assert "runAsUser" in result["remediation"]


def test_hidepid_hides_the_node_from_the_agent_user(open_tmp: Path) -> None:
    target = open_tmp / "hidden"
    target.mkdir()
    run = in_shell(
        f"unshare -m --propagation private sh -c "
        f"'mount -t proc -o hidepid=2 proc {target} && "
        f"exec {' '.join(AS_AGENT_USER)} $SELFCHECK check --only procfs --json'",
        {"HOST_PROC": str(target)},
    )
    result = run.check("procfs")
    assert (result["status"], result["reason"]) == ("failed", "hidepid")
    assert result["figures"]["visible_processes"] < 5
    assert "supplementalGroups" in result["remediation"]
    assert run.code == 2


def test_hidepid_does_not_hide_from_root(tmp_path: Path) -> None:
    target = tmp_path / "hidden"
    target.mkdir()
    run = in_shell(
        f"unshare -m --propagation private sh -c "
        f"'mount -t proc -o hidepid=2 proc {target} && exec $SELFCHECK check --only procfs --json'",
        {"HOST_PROC": str(target)},
    )
    result = run.check("procfs")
    assert result["status"] == "ok", result
    assert result["details"]["hidepid"] in ("2", "invisible")


def test_procfs_of_a_private_pid_namespace_is_not_the_host() -> None:
    run = in_shell(
        "exec unshare --pid --fork --mount-proc $SELFCHECK check --only procfs --json",
        {"HOST_PROC": "/proc"},
    )
    result = run.check("procfs")
    assert (result["status"], result["reason"]) == ("failed", "not_host")
    assert result["details"]["initial_pid_namespace"] is False
    assert "hostPath /proc" in result["remediation"]
    assert run.code == 2
