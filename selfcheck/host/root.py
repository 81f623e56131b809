"""A file system root: where the Agent container's files are, as this process reaches them.

With hostPID another container's mount namespace is open at ``<host procfs>/<pid>/root``
(proc(5), ``/proc/[pid]/root``): a path below it walks *that* container's mounts. The kernel
resolves a relative symlink met there inside it, but an absolute one against the reader's own
root (fs/proc/base.c ``proc_root_link`` gives the directory, not a chroot), so
``<root>/etc/os-release -> /usr/lib/os-release`` would silently read selfcheck's own file.
``Root.resolve`` therefore resolves every path inside the root, re-anchoring every absolute
link at it and never climbing above it: with ``openat2(2)``'s ``RESOLVE_IN_ROOT`` (Linux 5.6)
where the kernel has it, else component by component by the same rule
(prometheus/procfs ``NewFS(mountPoint)`` is the same idea for a procfs mount point).

A cycle pins the Agent's root: ``pinned`` opens ``/proc/<pid>/root`` once (an ``O_PATH``
descriptor) and every path of the cycle goes through ``/proc/self/fd/<n>``, that directory,
so a PID reused or an Agent restarted mid-cycle cannot switch a later access to another
container's files (the start-time re-check in ``selfcheck.host.eyes`` then discards the cycle).

The same value rooted at ``/`` is selfcheck's own view (no walk: the kernel resolves as usual),
and rooted at a fixture directory serves the tests.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import weakref
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINKS = 40
"""The kernel's own limit on links followed in one lookup (include/linux/namei.h MAXSYMLINKS)."""
OWN_BASE = Path("/")
SYS_OPENAT2 = 437
"""The same number on every architecture (include/uapi/asm-generic/unistd.h, Linux 5.6)."""
RESOLVE_IN_ROOT = 0x10
O_PATH = getattr(os, "O_PATH", 0o10000000)


class Handle:
    """An open ``O_PATH`` descriptor of a root directory, closed when nothing holds it: a
    check abandoned in a blocked call keeps the root it was given, and the descriptor with it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._close = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        self._close()


def pinned(directory: str | os.PathLike[str]) -> Root:
    """``directory`` opened once; raises ``OSError`` (``EACCES`` when the kernel's ptrace read
    check refuses ``/proc/<pid>/root``)."""
    fd = os.open(directory, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    handle = Handle(fd)
    return Root(Path(f"/proc/self/fd/{fd}"), handle)


@dataclass(frozen=True, slots=True)
class Root:
    """Paths as a container names them (``/host/proc``), reached through ``base``."""

    base: Path = OWN_BASE
    handle: Handle | None = field(default=None, compare=False, repr=False)
    """The pinned descriptor ``base`` names (``/proc/self/fd/<n>``), when pinned."""

    @property
    def is_own(self) -> bool:
        return self.base == OWN_BASE

    def resolve(self, path: str | os.PathLike[str]) -> str:
        """The container's canonical path for ``path``: links followed inside the root.

        A component that does not exist ends the walk and the rest is kept as given, so that
        opening the result fails with the same ``ENOENT`` the container would get. Raises
        ``OSError`` (``ELOOP``) after ``MAX_LINKS`` links, as the kernel would.
        """
        text = os.fspath(path)
        if self.is_own:
            return os.path.normpath(text) if text.startswith("/") else text
        if self.handle is not None:
            found = in_root(self.handle.fd, text)
            if found is not None:
                return found
        return _walk(self.base, text)

    def at(self, path: str | os.PathLike[str]) -> Path:
        """Where this process opens the container's ``path``: ``base`` + the resolved path."""
        if self.is_own:
            return Path(path)
        return self.base / self.resolve(path).lstrip("/")

    def inside(self, outside: str | os.PathLike[str]) -> str:
        """The container's name for a path under ``base`` (the inverse of ``at``)."""
        text = os.fspath(outside)
        if self.is_own:
            return text
        relative = os.path.relpath(text, self.base)
        return "/" if relative == "." else "/" + relative


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_openat2_missing: list[bool] = []
"""Set once ``openat2`` answered ``ENOSYS`` (or a seccomp filter's ``EPERM``): not tried again."""


def openat2_in_root(dirfd: int, path: str) -> int:
    """``openat2(dirfd, path, O_PATH, RESOLVE_IN_ROOT)``: a descriptor
    of ``path`` resolved as if ``dirfd`` were ``/``; raises ``OSError``."""
    how = _OpenHow(O_PATH | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT)
    fd = int(
        _libc.syscall(
            ctypes.c_long(SYS_OPENAT2),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return fd


def in_root(dirfd: int, path: str) -> str | None:
    """The container's name for ``path`` resolved by the kernel inside ``dirfd``, else
    ``None`` (no ``openat2``, a missing component: the walk then keeps the rest as given).

    The name is read back from the descriptor (``/proc/self/fd/<n>``): the kernel writes it
    relative to the root of the mount namespace the file lives in (fs/d_path.c), so the root's
    own name there (``/`` after a ``pivot_root``, its directory after a ``chroot``) is cut off.
    """
    if _openat2_missing:
        return None
    try:
        fd = openat2_in_root(dirfd, path)
    except OSError as error:
        if error.errno in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
            _openat2_missing.append(True)
        return None  # the walk gives the kernel's answer: ENOENT's path, or ELOOP
    try:
        return _name_below(fd, dirfd)
    finally:
        os.close(fd)


def _name_below(fd: int, dirfd: int) -> str | None:
    """``fd``'s path with ``dirfd``'s cut off, both as the kernel names them."""
    try:
        found = str(Path(f"/proc/self/fd/{fd}").readlink())
        top = str(Path(f"/proc/self/fd/{dirfd}").readlink())
    except OSError:
        return None
    inside = top in ("/", found) or found.startswith(top.rstrip("/") + "/")
    if not found.startswith("/") or found.endswith(" (deleted)") or not inside:
        return None
    return found if top == "/" else "/" + found[len(top) :].lstrip("/")


def _walk(base: Path, path: str) -> str:
    """Component by component, ``..`` clamped at the root, absolute links re-anchored."""
    pending = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        candidate = base.joinpath(*done, name)
        try:
            mode = candidate.lstat().st_mode
        except OSError:
            return "/" + "/".join([*done, name, *pending])
        if not stat.S_ISLNK(mode):
            done.append(name)
            continue
        links += 1
        if links > MAX_LINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/" + "/".join([*done, name]))
        target = str(candidate.readlink())
        if target.startswith("/"):
            done = []
        pending = [p for p in target.split("/") if p not in ("", ".")] + pending
    return "/" + "/".join(done)
