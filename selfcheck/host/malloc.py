"""One malloc arena for a long-lived selfcheck process.

glibc gives each new thread that allocates an arena of its own, up to eight per core
(malloc(3), mallopt(3) ``M_ARENA_MAX``), and every arena keeps the memory freed in it
resident. The threads of ``selfcheck serve`` and of the helper (the runner, the checks',
bcrypt's) allocate little and take the interpreter lock in turns, so their arenas held memory
and bought no concurrency: with one arena the server holds 0.3 MB less after 30 s and 0.6 MB
less over 15 minutes, for the same CPU (``docs/performance.md``,
``bench/results/footprint-arenas.md``).

``MALLOC_ARENA_MAX`` in the environment is the operator's own choice (glibc reads it when the
process starts) and is left as it is; another C library (musl) has no such knob and nothing
is done there.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number (malloc/malloc.h)."""
ENV = "MALLOC_ARENA_MAX"


def one_arena(environ: Mapping[str, str] = os.environ) -> bool:
    """Limit this process to glibc's main arena; True when it was done.

    It must run before the process starts threads: a thread keeps the arena it was given
    at its first allocation.
    """
    if ENV in environ or not _is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(1)))


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):
        return False
