"""``tests.support.pod``'s wait for a new PID namespace, on the kernel's real window.

``unshare --pid`` without ``--fork`` makes a namespace whose first process comes only when the
command forks: until then its ``pid_for_children`` is missing (``ENOENT``), as it is for a
moment under every ``unshare --pid --fork`` (the race a loaded CI machine hit). Needs root.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.support.pod import _entered

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unshare --pid needs root")

FORKS_LATER = "import os, time; time.sleep(0.5); os.fork() or time.sleep(30); os.wait()"


def _in_window(holder: subprocess.Popen[str]) -> str:
    """The holder's ``pid_for_children`` once it reads ``ENOENT`` (``unshare`` has run)."""
    path = f"/proc/{holder.pid}/ns/pid_for_children"
    for _ in range(2000):
        try:
            os.stat(path)
        except FileNotFoundError:
            return path
        time.sleep(0.001)
    raise AssertionError("unshare --pid never opened the window")


def test_a_namespace_without_its_first_process_yet_is_waited_for() -> None:
    holder = subprocess.Popen(
        ["unshare", "--pid", "/usr/bin/python3", "-c", FORKS_LATER],
        text=True,
        start_new_session=True,
    )
    try:
        path = _in_window(holder)
        assert _entered(path, "pid", holder) == path
        assert os.stat(path).st_ino != os.stat("/proc/self/ns/pid").st_ino
    finally:
        os.killpg(holder.pid, 9)
        holder.wait()


def test_a_holder_that_ends_first_is_an_error_not_a_wait() -> None:
    holder = subprocess.Popen(["unshare", "--pid", "/usr/bin/sleep", "0.3"], text=True)
    path = _in_window(holder)
    with pytest.raises(FileNotFoundError):
        _entered(path, "pid", holder)
    assert holder.wait(timeout=5) == 0
