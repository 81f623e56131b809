"""passwd: coverage of real host processes, and hostile passwd files."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from selfcheck.checks import passwd
from selfcheck.context import CheckContext
from selfcheck.model import Reason, Status
from tests.support.configs import make_config
from tests.support.run import selfcheck


def test_the_machines_passwd_names_its_processes() -> None:
    run = selfcheck(["check", "--only", "passwd", "--json"], {"HOST_ETC": "/etc"})
    result = run.check("passwd")
    assert result["status"] == "ok", result
    assert result["figures"]["uid_resolution_ratio"] >= passwd.MIN_COVERAGE
    assert result["details"]["sampled_processes"] > 3
    assert result["required"] is True  # the tests run as root, like the chart's Agent


def test_an_image_passwd_without_host_users_is_low_coverage(tmp_path: Path) -> None:
    # Only a user nobody runs as: every sampled process is unnamed.
    (tmp_path / "passwd").write_text("nobody:x:65534:65534:nobody:/:/bin/false\n")
    outcome = passwd.run(CheckContext.of(make_config(HOST_ETC=tmp_path, HOST_PROC="/proc")))
    assert (outcome.status, outcome.reason) == (Status.DEGRADED, Reason.LOW_UID_COVERAGE)
    assert outcome.figures["uid_resolution_ratio"] < 0.5
    assert 0 in outcome.details["unresolved_uids"]
    assert "/etc/passwd" in outcome.remediation


def test_sample_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    config = make_config(HOST_ETC=tmp_path, SELFCHECK_SAMPLE=2)
    outcome = passwd.run(CheckContext.of(config))
    assert outcome.details["sampled_processes"] <= 2


def test_missing_file(tmp_path: Path) -> None:
    outcome = passwd.run(CheckContext.of(make_config(HOST_ETC=tmp_path, HOST_PROC="/proc")))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.ENOENT)
    assert str(tmp_path / "passwd") in outcome.message


def test_garbage_is_a_parse_error(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_bytes(b"\x00\x01garbage\nno colons here\n")
    outcome = passwd.run(CheckContext.of(make_config(HOST_ETC=tmp_path, HOST_PROC="/proc")))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.PARSE_ERROR)
    assert outcome.details["malformed_lines"] == 2


def test_truncated_last_line_is_dropped_and_the_rest_counts() -> None:
    parsed = passwd.parse_passwd(b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:da", truncated=True)
    assert parsed.names == {0: "root"}
    assert parsed.bad_lines == 0


def test_oversized_file_is_capped(tmp_path: Path) -> None:
    line = b"u:x:1000:1000::/home/u:/bin/sh\n"
    (tmp_path / "passwd").write_bytes(
        b"root:x:0:0::/root:/bin/sh\n" + line * (passwd.CAP // len(line) + 10)
    )
    outcome = passwd.run(CheckContext.of(make_config(HOST_ETC=tmp_path, HOST_PROC="/proc")))
    assert outcome.details["truncated_at_bytes"] == passwd.CAP
    assert outcome.details["entries"] == 2


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_any_content_gives_an_outcome_never_an_exception(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "passwd").write_bytes(data)
        outcome = passwd.run(CheckContext.of(make_config(HOST_ETC=tmp, SELFCHECK_SAMPLE=8)))
    assert outcome.reason in (Reason.OK, Reason.PARSE_ERROR, Reason.LOW_UID_COVERAGE)


def test_non_ascii_digits_are_not_uids() -> None:
    """``"²".isdigit()`` is true; the Agent's strconv.Atoi (and int()) refuse it."""
    parsed = passwd.parse_passwd("root:x:0:0::/root:/bin/sh\nbad:x:²:0:::\nar:x:٣:0:::\n".encode())
    assert parsed.names == {0: "root"}
    assert parsed.bad_lines == 2
