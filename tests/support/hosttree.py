"""One factory for the fake host trees checks and readers are fed: ``/proc``, cgroupfs, ``/etc``.

A test writes only the files its judge reads, as a mapping from a path below the root to the
file's content (``str`` or ``bytes``), or to ``None`` for a directory; ``proc_tree`` adds the
procfs shape on top (a directory per PID, ``self`` pointing at one of them). The same
factory serves the fuzz tests, which write whatever bytes hypothesis draws.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

Content = str | bytes | None


def host_tree(root: Path, files: Mapping[str, Content], mode: int | None = None) -> Path:
    """Write ``files`` below ``root`` (directories as needed); ``mode`` for each file written."""
    for relative, content in files.items():
        path = root / relative
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        if mode is not None:
            path.chmod(mode)
    return root


def proc_tree(
    root: Path, processes: Mapping[int, Mapping[str, Content]], self_pid: int | None = None
) -> Path:
    """A procfs-shaped tree: ``<pid>/<file>`` for each process, ``self`` -> ``self_pid``
    (the first PID when not given)."""
    host_tree(
        root,
        {
            f"{pid}/{name}": content
            for pid, files in processes.items()
            for name, content in files.items()
        },
    )
    if processes:
        os.symlink(str(self_pid if self_pid is not None else next(iter(processes))), root / "self")
    return root
