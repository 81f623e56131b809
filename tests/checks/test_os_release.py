"""os_release: real file, missing, unreadable, and hostile contents (capped, never raising)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from selfcheck.checks import os_release
from selfcheck.config import Config
from selfcheck.context import CheckContext
from selfcheck.model import Reason, Status
from tests.support.configs import make_config
from tests.support.run import AS_AGENT_USER, selfcheck


def _write(tmp: Path, data: bytes) -> Config:
    (tmp / "os-release").write_bytes(data)
    return make_config(HOST_ETC=tmp)


def test_the_machines_file_is_published_in_node_info() -> None:
    run = selfcheck(["check", "--only", "os_release", "--json"], {"HOST_ETC": "/etc"})
    result = run.check("os_release")
    assert result["status"] == "ok"
    fields = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    assert result["details"]["id"] == fields["ID"].strip('"')
    assert run.json["node"]["os_id"] == fields["ID"].strip('"')
    assert run.json["node"]["os_version_id"] == fields.get("VERSION_ID", "").strip('"')


def test_quoted_and_commented_fields(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        b'# comment\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_ID="24.04"\nJUNK\n',
    )
    outcome = os_release.run(CheckContext.of(config))
    assert outcome.status == Status.OK
    assert outcome.node_info == {"os_id": "ubuntu", "os_version_id": "24.04"}
    assert "Ubuntu 24.04.1 LTS" in outcome.message


def test_missing_file_names_the_volume(tmp_path: Path) -> None:
    outcome = os_release.run(CheckContext.of(make_config(HOST_ETC=tmp_path)))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ENOENT)
    assert "(ENOENT)" in outcome.message
    assert "/host/etc/os-release" in outcome.remediation


def test_unreadable_file_is_eacces_for_the_agent_user(open_tmp: Path) -> None:
    target = open_tmp / "os-release"
    target.write_text("ID=debian\n")
    target.chmod(0o000)
    run = selfcheck(
        ["check", "--only", "os_release", "--json"], {"HOST_ETC": str(open_tmp)}, AS_AGENT_USER
    )
    result = run.check("os_release")
    assert (result["status"], result["reason"]) == ("failed", "eacces")
    assert run.code == 1  # optional by default: a warning, not a critical failure


def test_empty_binary_and_truncated_files_are_parse_errors(tmp_path: Path) -> None:
    for data in (b"", b"\x00\xff\xfe" * 100, b'ID="unterminated'):
        outcome = os_release.run(CheckContext.of(_write(tmp_path, data)))
        assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.PARSE_ERROR), data


def test_oversized_file_is_refused_not_read_whole(tmp_path: Path) -> None:
    outcome = os_release.run(
        CheckContext.of(_write(tmp_path, b"ID=x\n" + b"A=" + b"b" * (2 * os_release.CAP)))
    )
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.IO_ERROR)
    assert "EFBIG" in outcome.message


def test_a_fifo_does_not_block(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "os-release")
    outcome = os_release.run(CheckContext.of(make_config(HOST_ETC=tmp_path)))
    assert outcome.status == Status.FAILED
    assert "not a regular file" in outcome.message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_any_content_gives_an_outcome_never_an_exception(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        outcome = os_release.run(CheckContext.of(_write(Path(tmp), data)))
    assert outcome.status in (Status.OK, Status.FAILED)
    assert outcome.reason in (Reason.OK, Reason.PARSE_ERROR)
