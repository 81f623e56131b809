"""The kernel path DogStatsD origin detection stands on: ``SO_PASSCRED`` on a datagram socket.

The Agent's listener sets ``SO_PASSCRED`` on its ``unixgram`` socket and reads the sender's
PID from the ``SCM_CREDENTIALS`` message of every packet (uds_linux.go). The kernel writes
that PID as the receiver's PID namespace sees the sender, and writes 0 when it cannot see
it at all (uds_linux.go, "host PID mode?"): that is the whole failure this module lets a
check reproduce.

The receiver is bound in the abstract namespace (Linux autobind: a unique name, no file),
so the round trip works on a read-only root filesystem and leaves nothing behind. Abstract
names have no permissions, so any process in the same network namespace could send to it:
the receiver only accepts the datagram carrying its own random nonce.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import struct
import time
from dataclasses import dataclass

# struct ucred from <sys/socket.h>: pid_t pid, uid_t uid, gid_t gid.
UCRED = struct.Struct("=iII")
MAX_FOREIGN_DATAGRAMS = 32
_REAP_POLL = 0.005


@dataclass(frozen=True, slots=True)
class Credentials:
    """What ``SCM_CREDENTIALS`` said about the sender, in the receiver's namespaces."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """One datagram from a child process: its PID as we see it, and what the kernel wrote.

    ``credentials`` is ``None`` when the datagram arrived without an ``SCM_CREDENTIALS``
    message at all (the kernel, or a sandbox such as gVisor, ignored ``SO_PASSCRED``).
    """

    sender_pid: int
    credentials: Credentials | None
    address: str

    @property
    def faithful(self) -> bool:
        """The kernel wrote the sender's PID as this process sees it: what the Agent needs."""
        creds = self.credentials
        return creds is not None and creds.pid == self.sender_pid and creds.pid != 0


def printable(address: bytes | str) -> str:
    """An abstract address as ``ss -x`` shows it: ``@name``."""
    raw = address.encode() if isinstance(address, str) else address
    return "@" + raw[1:].decode("ascii", "replace") if raw[:1] == b"\0" else raw.decode()


def open_receiver(address: bytes | str = b"", passcred: bool = True) -> socket.socket:
    """A datagram socket with ``SO_PASSCRED`` set, bound to ``address``.

    The default empty address asks the kernel for a unique abstract name (autobind).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1 if passcred else 0)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def receiver_address(sock: socket.socket) -> bytes:
    name = sock.getsockname()
    return name if isinstance(name, bytes) else name.encode()


def _credentials(ancillary: list[tuple[int, int, bytes]]) -> Credentials | None:
    for level, kind, data in ancillary:
        is_ucred = level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
        if is_ucred and len(data) >= UCRED.size:
            pid, uid, gid = UCRED.unpack_from(data)
            return Credentials(pid, uid, gid)
    return None


def receive(sock: socket.socket, nonce: bytes, timeout: float) -> Credentials | None:
    """Wait for the datagram equal to ``nonce`` and return its credentials.

    Other datagrams are dropped (at most ``MAX_FOREIGN_DATAGRAMS``). Raises ``TimeoutError``
    when the nonce does not arrive within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    space = socket.CMSG_SPACE(UCRED.size)
    for _ in range(MAX_FOREIGN_DATAGRAMS + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        data, ancillary, _flags, _addr = sock.recvmsg(len(nonce) + 1, space)
        if data == nonce:
            return _credentials(ancillary)
    raise TimeoutError(errno.ETIMEDOUT, f"no datagram from the sender within {timeout:g} s")


def send(address: bytes, payload: bytes) -> None:
    """One unconnected ``sendto``, as a DogStatsD client does."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(payload, address)


def _fork_sender(address: bytes, payload: bytes) -> int:
    """Fork a child that sends ``payload`` once and exits; returns its PID as we see it.

    The socket is made before the fork so the child runs no Python beyond one ``sendto`` and
    ``os._exit``: nothing in the child can take a lock another thread of this process held
    at fork time. A child is used rather than a new interpreter because it costs about a
    millisecond instead of tens.
    """
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            status = 1
            try:
                sender.sendto(payload, address)
                status = 0
            finally:
                os._exit(status)
        return pid
    finally:
        sender.close()


def _wait_for_exit(pid: int, deadline: float) -> None:
    """Block until the child exits or ``deadline``, on a pidfd where the kernel has them."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG)[0] == 0:
            time.sleep(_REAP_POLL)
        return
    try:
        select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        os.close(pidfd)


def _reap(pid: int, deadline: float) -> None:
    """Collect the child by ``deadline``, killing it if it has not exited by then."""
    with contextlib.suppress(ChildProcessError):
        _wait_for_exit(pid, deadline)
        if os.waitpid(pid, os.WNOHANG)[0] != 0:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def round_trip(timeout: float) -> RoundTrip:
    """Send one datagram from a child process to an ``SO_PASSCRED`` receiver in this process.

    Raises ``OSError`` when the socket cannot be made or bound, and ``TimeoutError`` when the
    datagram does not arrive within ``timeout``; the child is always reaped.
    """
    nonce = b"selfcheck.origin_detection:" + os.urandom(8).hex().encode()
    with open_receiver() as receiver:
        address = receiver_address(receiver)
        deadline = time.monotonic() + timeout
        pid = _fork_sender(address, nonce)
        try:
            credentials = receive(receiver, nonce, timeout)
        finally:
            _reap(pid, deadline)
    return RoundTrip(pid, credentials, printable(address))


_PROVEN: list[RoundTrip] = []


def proven_round_trip(timeout: float) -> RoundTrip:
    """``round_trip``, until one is faithful; then that one, for the life of this process.

    Whether the kernel writes a sender's PID is a property of the kernel and of the sandbox
    around this process, neither of which changes under it, so once proven it is not asked
    again: a fork per cycle to ask cost 2.6 ms of CPU (1.0 here, 1.6 in the child), a tenth
    of the whole cycle (bench/results/footprint-helper.md). A round trip that failed or came
    back wrong is never kept: it is tried again at the next cycle.
    """
    if _PROVEN:
        return _PROVEN[0]
    trip = round_trip(timeout)
    if trip.faithful:
        _PROVEN.append(trip)
    return trip
