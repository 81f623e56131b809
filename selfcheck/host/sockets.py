"""Unix socket readers: is it a socket, can we connect, send one datagram, speak HTTP over it.

Every call here has a timeout and an overall deadline: a socket under ``/var/run`` can be a
stale file, a listener that accepts and never answers, or a receiver whose queue is full,
and none of those may hang a check. Failures are ``OSError`` values the checks classify
with ``classify`` (``selfcheck.host.files.reason_for`` plus the two socket-only cases:
not a socket, and a peer that answers but not in the protocol).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import socket
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from selfcheck.host.files import reason_for
from selfcheck.model import Reason

CONNECT_TIMEOUT = 0.5
"""The Agent's own reachability test connects within 500 ms (pkg/util/system/socket/socket.go)."""

HTTP_BODY_CAP = 256 * 1024

Path = str | os.PathLike[str]


class NotSocketError(OSError):
    """The path exists but is not a socket (a regular file, a directory, a FIFO)."""


class ProtocolViolationError(OSError):
    """The peer connected but did not answer in its protocol (bad HTTP, bad gRPC, bad JSON)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPROTO, message)

    def __str__(self) -> str:
        return str(self.strerror)


def classify(error: OSError) -> Reason:
    """The reason for any error these readers raise, from the closed set in ``Reason``."""
    if isinstance(error, NotSocketError):
        return Reason.NOT_SOCKET
    if isinstance(error, ProtocolViolationError):
        return Reason.PROTOCOL_ERROR
    return reason_for(error)


def file_type(mode: int) -> str:
    kinds = (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISLNK, "symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def stat_socket(path: Path) -> os.stat_result:
    """``stat`` that insists on a socket, following symlinks as a client's connect does."""
    result = os.stat(path)  # noqa: PTH116 (takes str and PathLike alike, like connect)
    if not stat.S_ISSOCK(result.st_mode):
        kind = file_type(result.st_mode)
        raise NotSocketError(errno.ENOTSOCK, f"is a {kind}, not a socket", os.fspath(path))
    return result


def mode_octal(st: os.stat_result) -> str:
    """``0722``-style permission bits, the form the Agent's chmod and ``ls`` users read."""
    return f"{stat.S_IMODE(st.st_mode):04o}"


class Deadline:
    """An overall time budget; every socket operation waits at most what is left of it."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    @classmethod
    def started_ago(cls, seconds: float, ago: float) -> Deadline:
        """A budget of ``seconds`` whose clock started ``ago`` seconds before now (an exec
        probe's budget starts when the kubelet runs it, not when Python is ready)."""
        deadline = cls(seconds)
        deadline._end -= ago
        return deadline

    @classmethod
    def of(cls, timeout: float | Deadline) -> Deadline:
        """A caller's deadline as it is, or a fresh one of ``timeout`` seconds."""
        return timeout if isinstance(timeout, Deadline) else cls(timeout)

    def expired(self) -> TimeoutError:
        return TimeoutError(errno.ETIMEDOUT, f"no answer within {self.seconds:g} s")

    def left(self, cap: float | None = None) -> float:
        """Seconds left (at most ``cap``); ``TimeoutError`` once the budget is spent."""
        remaining = self._end - self._clock()
        if remaining <= 0:
            raise self.expired()
        return remaining if cap is None else min(cap, remaining)


class DeadlineSocket(socket.socket):
    """A socket whose every receive and send waits at most what is left of a ``Deadline``.

    A per-call timeout alone lets a peer that trickles one byte at a time hold a reader for
    ever; re-arming the timeout from one overall deadline before each call bounds the whole
    exchange. ``http.client`` and the HTTP/2 loop read through ``recv_into``/``recv``.
    """

    deadline: Deadline

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.settimeout(self.deadline.left())
        try:
            return super().recv_into(buffer, nbytes, flags)
        except TimeoutError:
            raise self.deadline.expired() from None

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self.settimeout(self.deadline.left())
        try:
            return super().recv(bufsize, flags)
        except TimeoutError:
            raise self.deadline.expired() from None

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.settimeout(self.deadline.left())
        try:
            super().sendall(data, flags)
        except TimeoutError:
            raise self.deadline.expired() from None


SUN_PATH_MAX = 107
"""Bytes a unix socket address holds (unix(7)); a path under ``/proc/<pid>/root`` may not fit."""


@contextlib.contextmanager
def addressable(path: str | os.PathLike[str]) -> Iterator[str]:
    """An address for ``path`` that fits ``sun_path``: the path itself, or, when too long,
    ``/proc/self/fd/<n>`` of an ``O_PATH`` descriptor of it (the kernel follows that link
    to the socket's inode on ``connect``)."""
    text = os.fspath(path)
    if len(os.fsencode(text)) <= SUN_PATH_MAX:
        yield text
        return
    fd = os.open(text, os.O_PATH | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def connect_unix(
    path: Path,
    kind: socket.SocketKind = socket.SOCK_STREAM,
    deadline: Deadline | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> DeadlineSocket:
    """Connect to a unix socket within ``connect_timeout`` (and the deadline); caller closes.

    A stream connect to a datagram socket (and the reverse) fails with ``EPROTOTYPE``, which
    classifies as ``not_socket``: the file is a socket, but not the kind the client speaks.
    """
    deadline = deadline or Deadline(connect_timeout)
    sock = DeadlineSocket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
    sock.deadline = deadline
    try:
        sock.settimeout(deadline.left(connect_timeout))
        with addressable(path) as address:
            sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


def ascii_host(host: str) -> str | bytes:
    """``host`` as ``getaddrinfo`` takes it without the IDNA codec when it is plain ASCII
    (an address, ``localhost``): given text, ``getaddrinfo`` always encodes it with IDNA, whose
    codec (``encodings.idna``, ``stringprep``, ``unicodedata``) then stays resident, 0.25 MB
    for the life of the server, to encode names that need no encoding."""
    return host.encode("ascii") if host.isascii() else host


def connect_tcp(
    host: str, port: int, deadline: Deadline, connect_timeout: float = CONNECT_TIMEOUT
) -> DeadlineSocket:
    """Connect to ``host:port`` within ``connect_timeout``; every later read obeys ``deadline``."""
    name = ascii_host(host)
    family, kind, proto, _, address = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)[0]
    sock = DeadlineSocket(family, kind | socket.SOCK_CLOEXEC, proto)
    sock.deadline = deadline
    try:
        sock.settimeout(deadline.left(connect_timeout))
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


def probe_stream(path: Path, connect_timeout: float = CONNECT_TIMEOUT) -> None:
    """The Agent's ``socket.IsAvailable``: a stream connect that succeeds in time, then close."""
    connect_unix(path, socket.SOCK_STREAM, connect_timeout=connect_timeout).close()


def send_datagram(path: Path, payload: bytes | None) -> int:
    """Connect a ``unixgram`` socket to ``path`` and send ``payload`` without blocking.

    ``None`` only connects: that proves the file is a live datagram socket this user may
    write to, without adding a metric. A full receive queue is ``EAGAIN``, never a wait;
    a socket file nobody listens on is ``ECONNREFUSED``. Returns the bytes sent.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        with addressable(path) as address:
            sock.connect(address)
        return 0 if payload is None else sock.send(payload)


# -- HTTP/1.1 GET over a connected socket (unix or TCP) ----------------------------------


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; a peer that is not the service we expect is a protocol error."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as error:  # RecursionError: "[" * 1000 nests
            raise ProtocolViolationError(
                f"answered HTTP {self.status} but not JSON ({error})"
            ) from None


class _OverSocket(http.client.HTTPConnection):
    """``http.client`` speaking over a socket connected beforehand by ``connect_unix`` or
    ``connect_tcp``, so the connect keeps its errno (``EPROTOTYPE`` on a datagram socket)
    and every read obeys the ``DeadlineSocket``'s one overall deadline, which a per-receive
    timeout does not: a peer trickling a byte at a time would hold the check for ever."""

    def __init__(self, sock: DeadlineSocket, host: str) -> None:
        super().__init__(host)
        self.sock = sock

    def connect(self) -> None:  # only called once the socket is gone: never reconnect
        raise ProtocolViolationError("the peer closed the connection")


def exchange(sock: DeadlineSocket, host: str, target: str, cap: int = HTTP_BODY_CAP) -> HttpReply:
    """``GET target`` on ``sock`` and the whole answer, at most ``cap`` bytes of body.

    The wire format only: the caller connects and closes. Failures are ``OSError`` values:
    ``ETIMEDOUT`` when the deadline runs out, ``EPROTO`` for an answer that is not HTTP, is
    cut short or is too large.
    """
    connection = _OverSocket(sock, host)
    try:
        connection.request(
            "GET", target, headers={"User-Agent": "selfcheck", "Accept-Encoding": "identity"}
        )
        response = connection.getresponse()
        body = response.read(cap + 1)
    except http.client.HTTPException as error:  # bad status line, cut short, line too long
        raise ProtocolViolationError(f"GET {target} failed: {_short(error)}") from None
    except (ConnectionResetError, BrokenPipeError) as error:
        raise ProtocolViolationError(f"GET {target} failed: {_short(error)}") from None
    if len(body) > cap:
        raise ProtocolViolationError(f"answer larger than {cap} bytes")
    return HttpReply(response.status, dict(response.getheaders()), body)


def http_get(
    url: str,
    timeout: float | Deadline,
    unix_socket: Path | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    cap: int = HTTP_BODY_CAP,
) -> HttpReply:
    """``GET url`` within ``timeout`` (seconds or a shared ``Deadline``).

    With ``unix_socket`` the URL must be ``http://localhost/...`` and the request goes over
    that socket (the Docker API, the trace-agent). Every failure is an ``OSError`` whose
    errno says what happened: ``ENOENT``, ``EACCES``, ``ECONNREFUSED``, ``ETIMEDOUT``, or
    ``EPROTO`` for a peer that answered but not in HTTP.
    """
    deadline = Deadline.of(timeout)
    parts = urlsplit(url)
    if unix_socket is not None:
        sock = connect_unix(unix_socket, socket.SOCK_STREAM, deadline, connect_timeout)
    else:
        host = parts.hostname or "127.0.0.1"
        sock = connect_tcp(host, parts.port or 80, deadline, connect_timeout)
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    with sock:
        return exchange(sock, parts.netloc or "localhost", target, cap)


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]
