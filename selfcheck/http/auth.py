"""HTTP basic auth against ``basic_auth_users`` bcrypt hashes, as exporter-toolkit does it.

exporter-toolkit (``web/handler.go``) compares with ``bcrypt.CompareHashAndPassword``, uses a
fixed hash for unknown users so that timing does not tell which users exist, and caches each
(user, hash, password) verdict, since one comparison at cost 10 takes tens of milliseconds.
This does the same with the ``bcrypt`` library (imported only when a file has users), with two
changes for an event-loop server: the comparison runs in a worker thread (``bcrypt`` releases
the GIL), so that probes keep being answered meanwhile, and the cache is keyed by a SHA-256 of
the triple, so no password is kept in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

UNKNOWN_USER_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
"""exporter-toolkit's hash of "fakepassword", compared against for a user not in the file."""
CACHE_ENTRIES = 256


def credentials(header: str) -> tuple[bytes, bytes] | None:
    """``Authorization: Basic <base64(user:password)>``, or ``None`` for anything else."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


class BasicAuth:
    """Verdicts for ``Authorization`` headers; ``verdict`` never blocks, ``compute`` may."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        import bcrypt  # only a file with users pays for the import

        self._checkpw = bcrypt.checkpw
        self._users = {user.encode(): hashed for user, hashed in users.items()}
        self._cache: dict[bytes, bool] = {}

    def _key(self, user: bytes, password: bytes) -> bytes:
        hashed = self._users.get(user, UNKNOWN_USER_HASH)
        digest = hashlib.sha256()
        for part in (user, hashed, password):
            digest.update(len(part).to_bytes(4, "big"))
            digest.update(part)
        return digest.digest()

    def verdict(self, header: str) -> bool | None:
        """``True``/``False`` from the cache, ``None`` when a bcrypt comparison is needed."""
        given = credentials(header)
        if given is None:
            return False
        return self._cache.get(self._key(*given))

    def compute(self, header: str) -> bool:
        """The bcrypt comparison (slow by design; run it off the event loop), cached."""
        given = credentials(header)
        if given is None:
            return False
        user, password = given
        known = user in self._users
        try:
            matches = self._checkpw(password, self._users.get(user, UNKNOWN_USER_HASH))
        except ValueError:  # a password bcrypt refuses (NUL byte): never a match
            matches = False
        ok = known and matches
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[self._key(user, password)] = ok
        return ok
