"""Become the Agent: its uid, gid, groups *and* capability sets, in this process.

Whether an ``open`` or ``connect`` succeeds depends on the credentials and on the effective
capabilities (``CAP_DAC_OVERRIDE`` opens a mode 000 file, ``CAP_DAC_READ_SEARCH`` lists an
unreadable directory). A helper that only changes uid loses every capability (the kernel
clears the permitted and effective sets when no uid stays 0, capabilities(7) "Effect of user
ID changes on capabilities"), and one that keeps uid 0 keeps all of selfcheck's: neither sees
what an Agent with ``capabilities: {drop: [ALL]}`` or with ``add: [...]`` sees. So the helper
child calls ``become`` first: it keeps its permitted set across the uid change
(``PR_SET_KEEPCAPS``), then sets exactly the Agent's effective and permitted sets with
``capset(2)``, drops from its bounding set what the Agent's lacks (``PR_CAPBSET_DROP``) and
clears its ambient set, the order ``setpriv(1)`` (util-linux sys-utils/setpriv.c) uses.

Only capabilities selfcheck holds can be given: ``capset`` never raises the permitted set.
The caller (``selfcheck.host.eyes.enter``) asks for no more than selfcheck's own permitted
set and says which of the Agent's are missing; asked for more, ``become`` raises ``OSError``.

glibc exports ``capset`` and ``prctl``; ctypes calls them (the python-prctl binding would be a
compiled dependency for these four calls).
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import TYPE_CHECKING

from selfcheck.host.capabilities import CAP_BITS, decode

if TYPE_CHECKING:
    from selfcheck.host.eyes import Credentials

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_CAPBSET_READ, PR_CAPBSET_DROP = 23, 24
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
CAP_LAST_CAP = 63


class _Header(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _Data(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _prctl(option: int, arg: int, what: str) -> int:
    result = int(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0))
    if result < 0:
        _check(result, what)
    return result


def _capset(effective: int, permitted: int) -> None:
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for word in (0, 1):
        data[word].effective = (effective >> (32 * word)) & 0xFFFFFFFF
        data[word].permitted = (permitted >> (32 * word)) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _last_cap() -> int:
    """The running kernel's highest capability (``/proc/sys/kernel/cap_last_cap``)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as file:  # noqa: PTH123 - 3 bytes
            return min(int(file.read(8).strip()), CAP_LAST_CAP)
    except (OSError, ValueError):
        return CAP_BITS - 1


def _drop_bounding(keep: int) -> None:
    """Drops every bit the kernel knows that ``keep`` lacks (needs ``CAP_SETPCAP``)."""
    for bit in range(_last_cap() + 1):
        if keep >> bit & 1:
            continue
        if _prctl(PR_CAPBSET_READ, bit, "PR_CAPBSET_READ") == 1:
            _prctl(PR_CAPBSET_DROP, bit, f"dropping {decode(1 << bit)[0]} from the bounding set")


def become(creds: Credentials) -> None:
    """This process takes ``creds`` exactly; raises ``OSError`` naming what it could not do.

    Called first thing in a child that starts with the parent's identity (root, its
    capabilities). Irreversible, which is the point: nothing after it can act as selfcheck.
    """
    if creds.effective & ~creds.permitted:
        raise OSError(errno.EINVAL, "an effective capability outside the permitted set")
    own = _own_permitted()
    beyond = creds.permitted & ~own
    if beyond:
        raise OSError(
            errno.EPERM,
            f"selfcheck does not hold {', '.join(decode(beyond))}, which the Agent holds",
        )
    _prctl(PR_SET_KEEPCAPS, 1, "PR_SET_KEEPCAPS")
    _drop_bounding(creds.bounding)
    if frozenset(os.getgroups()) != creds.groups:
        os.setgroups(sorted(creds.groups))
    if os.getresgid() != (creds.gid,) * 3:
        os.setresgid(creds.gid, creds.gid, creds.gid)
    if os.getresuid() != (creds.uid,) * 3:
        os.setresuid(creds.uid, creds.uid, creds.uid)
    _capset(creds.effective, creds.permitted)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "clearing the ambient set")
    _prctl(PR_SET_KEEPCAPS, 0, "PR_SET_KEEPCAPS")


def _own_permitted() -> int:
    """This process's permitted set, from the kernel (``capget``)."""
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    return int(data[0].permitted) | int(data[1].permitted) << 32
