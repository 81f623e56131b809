"""A file system root: where the Agent container's files are, as this process reaches them.

With hostPID another container's mount namespace is open at ``<host procfs>/<pid>/root``
(proc(5), ``/proc/[pid]/root``): a path below it walks *that* container's mounts. The kernel
resolves a relative symlink met there inside it, but an absolute one against the reader's own
root (fs/proc/base.c ``proc_root_link`` gives the directory, not a chroot), so
``<root>/etc/os-release -> /usr/lib/os-release`` would silently read selfcheck's own file.
``Root.resolve`` therefore walks a path component by component, re-anchoring every absolute
link at the root and never climbing above it, the rule of ``openat2(2)``'s ``RESOLVE_IN_ROOT``
(prometheus/procfs ``NewFS(mountPoint)`` is the same idea for a procfs mount point).

The same value rooted at ``/`` is selfcheck's own view (no walk: the kernel resolves as usual),
and rooted at a fixture directory serves the tests.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_LINKS = 40
"""The kernel's own limit on links followed in one lookup (include/linux/namei.h MAXSYMLINKS)."""
OWN_BASE = Path("/")


@dataclass(frozen=True, slots=True)
class Root:
    """Paths as a container names them (``/host/proc``), reached through ``base``."""

    base: Path = OWN_BASE

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
