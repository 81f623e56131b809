"""pod_logs: skipped unless logs are on; listing is not enough, a file must open."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfcheck.checks import pod_logs
from selfcheck.context import CheckContext
from selfcheck.model import Reason, Status
from tests.support.configs import make_config, settled
from tests.support.hosttree import host_tree
from tests.support.run import AS_AGENT_USER, selfcheck


def _tree(root: Path) -> Path:
    host_tree(root, {"default_web-1_0f0e/nginx/0.log": '{"log":"hello"}\n'}, mode=0o640)
    log = root / "default_web-1_0f0e" / "nginx" / "0.log"
    for directory in (root, log.parent.parent, log.parent):
        directory.chmod(0o755)
    return log


def test_skipped_when_logs_are_off(tmp_path: Path) -> None:
    context = CheckContext.of(make_config(SELFCHECK_POD_LOGS_DIR=tmp_path))
    outcome = settled(pod_logs.SPEC, context)
    assert (outcome.status, outcome.reason) == (Status.SKIPPED, Reason.NOT_ENABLED)
    assert outcome.message.startswith("log collection is off (DD_LOGS_ENABLED is not true); ")
    required = CheckContext.of(
        make_config(SELFCHECK_POD_LOGS_DIR=tmp_path, SELFCHECK_REQUIRE="pod_logs")
    )
    assert settled(pod_logs.SPEC, required).status is not Status.SKIPPED  # asked for: judged


def test_opens_a_log_file_as_root(tmp_path: Path) -> None:
    _tree(tmp_path)
    env = {"DD_LOGS_ENABLED": "true", "SELFCHECK_POD_LOGS_DIR": str(tmp_path)}
    outcome = pod_logs.run(CheckContext.of(make_config(env)))
    assert outcome.status == Status.OK
    assert "nginx/0.log" in outcome.message


def test_missing_directory(tmp_path: Path) -> None:
    env = {"DD_LOGS_ENABLED": "1", "SELFCHECK_POD_LOGS_DIR": str(tmp_path / "pods")}
    outcome = pod_logs.run(CheckContext.of(make_config(env)))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ENOENT)
    assert "logpodpath" in outcome.remediation


@pytest.mark.root
def test_root_owned_logs_are_listed_but_not_readable_by_the_agent_user(open_tmp: Path) -> None:
    """The non-root Agent of datadog-agent#6442: the directory lists, the file does not open."""
    log = _tree(open_tmp)
    env = {"DD_LOGS_ENABLED": "true", "SELFCHECK_POD_LOGS_DIR": str(open_tmp)}
    run = selfcheck(["check", "--only", "pod_logs", "--json"], env, AS_AGENT_USER)
    result = run.check("pod_logs")
    assert (result["status"], result["reason"]) == ("failed", "eacces")
    assert str(log) in result["message"]
    assert "supplementalGroups" in result["remediation"]
    assert run.code == 2


def test_an_empty_directory_is_not_the_nodes_pod_logs(tmp_path: Path) -> None:
    env = {"DD_LOGS_ENABLED": "true", "SELFCHECK_POD_LOGS_DIR": str(tmp_path)}
    outcome = pod_logs.run(CheckContext.of(make_config(env)))
    assert (outcome.status, outcome.reason) == (Status.DEGRADED, Reason.NO_LOG_FILE)
    assert "no pod directories" in outcome.message
    assert "logpodpath" in outcome.remediation


def test_pods_without_any_log_file(tmp_path: Path) -> None:
    (tmp_path / "default_web-1_0f0e" / "nginx").mkdir(parents=True)
    env = {"DD_LOGS_ENABLED": "true", "SELFCHECK_POD_LOGS_DIR": str(tmp_path)}
    outcome = pod_logs.run(CheckContext.of(make_config(env)))
    assert (outcome.status, outcome.reason) == (Status.DEGRADED, Reason.NO_LOG_FILE)
    assert "1 pod directories listed" in outcome.message
