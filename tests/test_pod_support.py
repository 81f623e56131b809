"""``tests.support.pod``'s wait for a new PID namespace, on the kernel's real window.

``unshare --pid`` without ``--fork`` makes a namespace whose first process comes only when the
command forks: until then its ``pid_for_children`` is missing (``ENOENT``), as it is for a
moment under every ``unshare --pid --fork`` (the race a loaded CI machine hit). And a node that
does not start is stopped by the ``Pod`` itself: that CI run left its ``unshare`` running. Needs
root.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.support import pod
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


def test_a_node_that_does_not_start_leaves_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixture that fails in ``Pod()`` is never closed by its ``with``: the Pod does it."""
    started: list[subprocess.Popen[str]] = []
    popen = subprocess.Popen

    def recorded(*args: object, **kwargs: object) -> subprocess.Popen[str]:
        started.append(popen(*args, **kwargs))  # type: ignore[call-overload]
        return started[-1]

    def never(path: str, kind: str, holder: subprocess.Popen[str]) -> str:
        raise AssertionError("unshare did not make a pid namespace")

    monkeypatch.setattr(subprocess, "Popen", recorded)
    monkeypatch.setattr(pod, "_entered", never)
    with pytest.raises(AssertionError, match="did not make"):
        pod.Pod(own_node=True)
    assert len(started) == 1 and started[0].returncode is not None
    assert _group_gone(started[0].pid), "the node's init outlived its Pod"


def _group_gone(pgid: int) -> bool:
    """No process of ``pgid`` still running (a killed ``init`` is a zombie until the host's
    PID 1 reaps it, which is not this test's to wait for)."""
    for _ in range(500):
        if not any(_running_in(pid, pgid) for pid in os.listdir("/proc") if pid.isdigit()):
            return True
        time.sleep(0.01)
    return False


def _running_in(pid: str, pgid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[2]) == pgid
