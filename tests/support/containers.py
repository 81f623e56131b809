"""This machine's Python inside real containers, so selfcheck runs from the container's place.

No image with Python can be pulled here, so containers get a busybox root file system and the
machine's interpreter, shared libraries, virtual environment and work tree bound read-only
into it. The same binds serve ``docker run`` (``-v``) and ``ctr run`` (``--mount``).
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

from tests.support.daemons import busybox_tar
from tests.support.run import REPO


def python_binds() -> list[tuple[str, str]]:
    """``(source, target)`` pairs: the interpreter, its libraries and the work tree."""
    binds = [("/usr", "/usr")]
    for lib in ("/lib", "/lib64"):
        if Path(lib).exists():
            binds.append((os.path.realpath(lib), lib))
    for path in sorted({sys.base_prefix, sys.prefix, str(REPO)}):
        if path != "/usr" and not path.startswith("/usr/"):
            binds.append((path, path))
    return binds


PYTHON_ENV = {"PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}


def docker_python_args() -> list[str]:
    args: list[str] = []
    for source, target in python_binds():
        args += ["-v", f"{source}:{target}:ro"]
    for key, value in PYTHON_ENV.items():
        args += ["-e", f"{key}={value}"]
    return args


def ctr_python_args() -> list[str]:
    args: list[str] = []
    for source, target in python_binds():
        args += ["--mount", f"type=bind,src={source},dst={target},options=rbind:ro"]
    for key, value in PYTHON_ENV.items():
        args += ["--env", f"{key}={value}"]
    return args


def busybox_rootfs(directory: Path) -> Path:
    """A busybox root file system unpacked in ``directory`` (``ctr run --rootfs``)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(busybox_tar())) as tar:
        tar.extractall(directory)  # our own archive: busybox and its links
    for name in ("usr", "lib", "lib64", "host", "var/run/datadog"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    return directory


def selfcheck_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "selfcheck", *args]
