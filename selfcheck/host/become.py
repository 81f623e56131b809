"""Become the Agent: the helper process takes exactly the Agent's credentials, first thing.

The helper (``selfcheck.asagent_child``) starts with the server's own identity (root, with the
runtime's default capability set) and calls ``become`` before it reads a request, so every
access it makes afterwards is the Agent's: supplementary groups first (``setgroups`` needs
``CAP_SETGID``, gone once the uid changes), then the gid, then the uid (setresuid(2): real,
effective and saved alike, so nothing can switch back). The kernel clears the capability sets
when the uid leaves 0 (capabilities(7), "Effect of user ID changes on capabilities").
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selfcheck.host.eyes import Credentials


def become(creds: Credentials) -> None:
    """Take ``creds``; ``OSError`` (``EPERM`` without ``CAP_SETUID``/``CAP_SETGID``) when the
    kernel refuses any step, which the helper answers as a refusal."""
    os.setgroups(sorted(creds.groups))
    os.setresgid(creds.gid, creds.gid, creds.gid)
    os.setresuid(creds.uid, creds.uid, creds.uid)
