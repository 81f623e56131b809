"""``one_arena``: the threads of a process that called it allocate from glibc's main arena.

Real interpreters with four threads that each allocate and wait; their arenas are read from
``/proc/<pid>/maps`` (``tests.support.arenas``) while the threads are alive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping

from tests.support.arenas import glibc_heaps
from tests.support.run import base_env

THREADS = """
import json, sys, threading
from selfcheck.host.malloc import one_arena
limited = one_arena() if sys.argv[1] == "limit" else None
release = threading.Event()
def allocate():
    held = [bytes(100_000) for _ in range(4)]
    release.wait()
threads = [threading.Thread(target=allocate) for _ in range(4)]
for thread in threads:
    thread.start()
print(json.dumps(limited), flush=True)
sys.stdin.readline()
release.set()
"""


def _heaps_with_four_threads(
    how: str, extra: Mapping[str, str] | None = None
) -> tuple[object, int]:
    child = subprocess.Popen(
        [sys.executable, "-c", THREADS, how],
        env=base_env(extra),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        limited = json.loads(child.stdout.readline())
        heaps = glibc_heaps(child.pid)
        child.communicate("\n", timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0
    return limited, heaps


def test_without_it_each_thread_gets_an_arena_of_its_own() -> None:
    assert _heaps_with_four_threads("none") == (None, 4)


def test_with_it_every_thread_allocates_from_the_main_arena() -> None:
    assert _heaps_with_four_threads("limit") == (True, 0)


def test_an_operators_malloc_arena_max_is_left_as_it_is() -> None:
    assert _heaps_with_four_threads("limit", {"MALLOC_ARENA_MAX": "2"}) == (False, 1)
