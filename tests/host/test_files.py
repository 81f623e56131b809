"""The capped reader and the errno classifier every check shares."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from selfcheck.host.files import (
    NotRegularFileError,
    describe,
    read_capped,
    read_text,
    read_whole_text,
    reason_for,
)
from selfcheck.model import Reason


def test_reads_are_capped(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 1_000_000)
    assert len(read_capped(tmp_path / "big", 1000)) == 1000


def test_whole_reads_refuse_oversized_files(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 2000)
    with pytest.raises(OSError, match="larger than 1000 bytes"):
        read_whole_text(tmp_path / "big", 1000)


def test_a_fifo_without_writer_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotRegularFileError):
        read_capped(tmp_path / "fifo")


def test_directories_and_devices_are_refused(tmp_path: Path) -> None:
    for path in (tmp_path, Path("/dev/zero")):
        with pytest.raises(OSError):
            read_capped(path)


def test_binary_content_decodes_without_error(tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(bytes(range(256)))
    assert len(read_text(tmp_path / "bin")) == 256


def test_procfs_files_read_although_stat_says_size_zero() -> None:
    assert "Name:" in read_text("/proc/self/status")


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.ENOENT, Reason.ENOENT),
        (errno.ENOTDIR, Reason.ENOENT),
        (errno.EACCES, Reason.EACCES),
        (errno.EPERM, Reason.EACCES),
        (errno.ECONNREFUSED, Reason.ECONNREFUSED),
        (errno.EAGAIN, Reason.EAGAIN),
        (errno.ENOBUFS, Reason.EAGAIN),
        (errno.ENOTSOCK, Reason.NOT_SOCKET),
        (errno.EPROTOTYPE, Reason.NOT_SOCKET),
        (errno.ETIMEDOUT, Reason.TIMEOUT),
        (errno.EIO, Reason.IO_ERROR),
    ],
)
def test_errno_classification(code: int, reason: Reason) -> None:
    assert reason_for(OSError(code, os.strerror(code))) == reason


def test_timeouts_and_descriptions() -> None:
    assert reason_for(TimeoutError()) == Reason.TIMEOUT
    assert reason_for(TimeoutError()) == Reason.TIMEOUT
    error = OSError(errno.EACCES, "Permission denied")
    assert describe(error, "/host/proc") == "/host/proc: Permission denied (EACCES)"
    assert describe(TimeoutError(), "/x.sock") == "/x.sock: timed out (ETIMEDOUT)"
