"""Capped, non-blocking file reads and the one errno-to-reason classifier.

Files under ``/host`` are not ours: a procfs entry can be huge, a path can be swapped for a
FIFO that blocks ``open()`` forever, a passwd can be truncated or binary. Every read goes
through ``read_capped``: ``O_NONBLOCK`` so a FIFO cannot block the open, a refusal of
anything that is not a regular file, and a byte cap so memory stays bounded.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

from selfcheck.model import Reason

DEFAULT_CAP = 256 * 1024

_REASON_BY_ERRNO = {
    errno.ENOENT: Reason.ENOENT,
    errno.ENOTDIR: Reason.ENOENT,
    errno.EACCES: Reason.EACCES,
    errno.EPERM: Reason.EACCES,
    errno.ECONNREFUSED: Reason.ECONNREFUSED,
    errno.EAGAIN: Reason.EAGAIN,
    errno.ENOBUFS: Reason.EAGAIN,
    errno.ETIMEDOUT: Reason.TIMEOUT,
    errno.ENOTSOCK: Reason.NOT_SOCKET,
    errno.EPROTOTYPE: Reason.NOT_SOCKET,
}


class NotRegularFileError(OSError):
    """The path exists but is a FIFO, device, socket or directory where a file was expected."""


class FileTooLargeError(OSError):
    """Raised only by readers that need the whole file and got more than their cap."""


def reason_for(error: OSError) -> Reason:
    """Map an ``OSError`` to the closed set of reasons shared by every check."""
    if isinstance(error, TimeoutError | socket.timeout):
        return Reason.TIMEOUT
    if error.errno is None:
        return Reason.IO_ERROR
    return _REASON_BY_ERRNO.get(error.errno, Reason.IO_ERROR)


def describe(error: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """``<path>: <strerror> (<ERRNO>)``, the form every message uses."""
    where = str(path if path is not None else error.filename or "")
    if error.errno is not None and error.errno in errno.errorcode:
        text = error.strerror or os.strerror(error.errno)
        what = f"{text} ({errno.errorcode[error.errno]})"
    elif isinstance(error, TimeoutError | socket.timeout):
        what = "timed out (ETIMEDOUT)"
    else:
        what = str(error) or type(error).__name__
    return f"{where}: {what}" if where else what


def read_capped(path: str | os.PathLike[str], cap: int = DEFAULT_CAP) -> bytes:
    """Read at most ``cap`` bytes of a regular file without ever blocking in ``open``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file", str(path))
        chunks: list[bytes] = []
        left = cap
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], cap: int = DEFAULT_CAP) -> str:
    """``read_capped`` decoded leniently: a garbled byte must not become an exception."""
    return read_capped(path, cap).decode("utf-8", errors="replace")


def read_whole_text(path: str | os.PathLike[str], cap: int = DEFAULT_CAP) -> str:
    """Like ``read_text`` but refuses a file larger than ``cap`` instead of truncating it."""
    data = read_capped(path, cap + 1)
    if len(data) > cap:
        raise FileTooLargeError(errno.EFBIG, f"larger than {cap} bytes", str(path))
    return data.decode("utf-8", errors="replace")


def path_exists(path: Path) -> bool:
    try:
        path.lstat()
    except OSError:
        return False
    return True
