"""A small asyncio HTTP/1.1 server for probes and scrapes, hardened for a shared node.

Why not ``http.server`` or ``prometheus_client.start_http_server``: the threaded stdlib
server measured p99 891 ms under 64 clients here, and ``start_http_server`` answers every
path with 200, which would pass every probe. Why not a framework: the server answers only
bodiless GET and HEAD requests, so a strict request-line and header parser is a few lines,
while an extra dependency would cost memory on every node.

Why an ``asyncio.Protocol`` and not streams: ``StreamReader.readuntil`` under
``asyncio.wait_for`` creates a task and a timer per request, which measured p99 19 ms and
8 k requests/s for ``/livez`` under 64 clients (bench/http_load.py); a protocol answers from
``data_received`` with one ``write`` and keeps every deadline in one periodic sweep.

Why its own accept loop: asyncio's (CPython 3.11, python/cpython#151615) keeps calling ``accept()``
after ``EMFILE`` and schedules one retry per backlog slot, so at the file descriptor limit
it printed thousands of tracebacks a second and spun. Here, out of descriptors, the server
spends a spare descriptor kept for that moment to answer each waiting client ``503`` at
once instead of leaving it hanging in the backlog, logs one line, and pauses accepting for
``ACCEPT_BACKOFF``; it serves again as soon as descriptors are free.

Defences, each a user-visible promise: requests larger than ``MAX_HEAD`` get 431 and are
closed; a client that has not sent a whole request head within ``IDLE_TIMEOUT`` of the
server starting to wait for it is closed (trickling bytes does not extend it); a client
that stops reading its answers is closed after ``WRITE_TIMEOUT`` and, meanwhile, no more
of its requests are read; at ``max_connections`` the longest-waiting connection is
evicted so a fresh kubelet probe is always served; anything but GET and HEAD gets 405.

TLS and basic auth come from the exporter-toolkit web configuration (``selfcheck.http.webconfig``):
asyncio's own TLS transport wraps each accepted socket with the ``SSLContext`` current at that
accept (rebuilt when the files change), under the same idle deadline for its handshake; the
answers stay the same bytes from the same caches, the configuration's extra headers part of
the cache key. A bcrypt comparison runs in one worker thread while the connection waits, so
a scrape with new credentials never holds up the probes of others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from selfcheck.http.access import Gate, Pending, Policy, is_open
from selfcheck.http.app import App, Response, text
from selfcheck.logs import event, get_logger

MAX_HEAD = 8192
IDLE_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
MAX_CONNECTIONS = 512
MAX_HEADERS = 64
BACKLOG = 1024
ACCEPT_BATCH = 64
ACCEPT_BACKOFF = 0.1
RESOURCE_LOG_EVERY = 10.0
TLS_READ_SIZE = 4 * 1024
"""Bytes asyncio's TLS transport reads at a time, and keeps as a buffer per connection: its
default, 256 KiB, made 500 idle TLS connections cost 128 MB (bench/http_load.py: 199 MB of
RSS; 74 MB with 16 KiB, 65 MB with 4 KiB); selfcheck's requests are a few hundred bytes and a
longer TLS record is simply read in several calls."""
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ALLOWED = ("GET", "HEAD")
_END = b"\r\n\r\n"
_PHRASES = {s.value: s.phrase for s in HTTPStatus}
_CACHED_BODY = 512
_LARGE_ENTRIES = 8
# id(body) is unique while the body is alive, and each entry keeps its body alive.
_LARGE: dict[
    tuple[int, int, str, bool, bool, tuple[tuple[str, str], ...]], tuple[bytes, bytes]
] = {}
UNAUTHORIZED = Response(
    401, b"Unauthorized\n", extra_headers=(("WWW-Authenticate", 'Basic realm="selfcheck"'),)
)
"""exporter-toolkit's answer to missing or wrong credentials: one line, a Basic challenge."""
Headers = tuple[tuple[str, str], ...]
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 29\r\nConnection: close\r\n\r\nout of file descriptors, retry\n"
)


class BadRequestError(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass(slots=True)
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


def parse_head(head: bytes) -> _Request:
    """Parse a request head strictly; anything unexpected becomes a 4xx, never an exception."""
    try:
        decoded = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequestError(text(400, "bad request\n")) from None
    lines = decoded.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[1] or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequestError(text(400, "bad request line\n"))
    method, target, version = parts
    if not target.startswith("/"):
        raise BadRequestError(text(400, "bad request target\n"))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequestError(text(400, "bad header\n"))
        headers[name.lower()] = value.strip()
    if len(headers) > MAX_HEADERS:
        raise BadRequestError(text(431, "too many headers\n"))
    request = _Request(method, target, version, headers)
    if method not in _ALLOWED:
        raise BadRequestError(
            Response(405, b"method not allowed\n", extra_headers=(("Allow", "GET, HEAD"),))
        )
    if headers.get("transfer-encoding") or headers.get("content-length", "0") not in ("", "0"):
        raise BadRequestError(text(400, "request bodies are not accepted\n"))
    return request


def render(response: Response, head_only: bool, keep_alive: bool, extra: Headers = ()) -> bytes:
    """Rendered answers come from caches: small ones (every probe's) by value, large ones
    (``/metrics``, the same bytes object for a whole snapshot) by the body's identity, so a
    scrape costs neither formatting nor copying the body behind a new head."""
    if len(response.body) <= _CACHED_BODY:
        return _render_small(response, head_only, keep_alive, extra)
    key = (id(response.body), response.status, response.content_type, head_only, keep_alive, extra)
    cached = _LARGE.get(key)
    if cached is not None and cached[0] is response.body:
        return cached[1]
    data = _render(response, head_only, keep_alive, extra)
    if len(_LARGE) >= _LARGE_ENTRIES:
        _LARGE.clear()
    _LARGE[key] = (response.body, data)
    return data


def _render(response: Response, head_only: bool, keep_alive: bool, configured: Headers) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (*response.extra_headers, *configured))
    head = (
        f"HTTP/1.1 {response.status} {_PHRASES.get(response.status, '')}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"
        f"{extra}\r\n"
    ).encode("latin-1")
    return head if head_only else head + response.body


_render_small = functools.lru_cache(maxsize=256)(_render)


def respond(app: App, head: bytes) -> tuple[bytes, bool]:
    """The bytes to send for one request head, and whether the connection stays open."""
    answer = respond_as(app, head, None)
    assert not isinstance(answer, Pending)  # no policy, no credentials to compare
    return answer


def respond_as(
    app: App, head: bytes, policy: Policy | None, decided: bool | None = None
) -> tuple[bytes, bool] | Pending:
    """The bytes to send for one request head, and whether the connection stays open; or
    ``Pending`` when its credentials need a bcrypt comparison first (``decided`` is then its
    outcome on the second call)."""
    extra = policy.headers if policy is not None else ()
    try:
        request = parse_head(head)
    except BadRequestError as bad:
        return render(bad.response, False, False, extra), False
    keep_alive = request.keep_alive
    head_only = request.method == "HEAD"
    auth = policy.auth if policy is not None else None
    if auth is not None and not is_open(request.target):
        header = request.headers.get("authorization", "")
        allowed = auth.verdict(header) if decided is None else decided
        if allowed is None:
            return Pending(auth, header)
        if not allowed:
            return render(UNAUTHORIZED, head_only, keep_alive, extra), keep_alive
    response = app.handle(request.target, request.headers.get("accept", ""))
    return render(response, head_only, keep_alive, extra), keep_alive


class _Connection(asyncio.Protocol):
    """One client: requests are answered in order, straight from ``data_received``."""

    def __init__(self, server: Server, policy: Policy | None = None) -> None:
        self.server = server
        self.policy = policy
        self.deferred: bytes | None = None
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.scanned = 0
        self.waiting_since = server.now()
        self.paused_since: float | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.admit(self)
        if self.policy is not None and not _allowed_san(self.policy, transport):
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.forget(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.buffer += data
        self._answer()

    def eof_received(self) -> bool:
        self.close()
        return False

    def pause_writing(self) -> None:
        """The client is not reading: read none of its further requests until it does."""
        self.paused_since = self.server.now()
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused_since = None
        if self.transport is not None and not self.closing and self.deferred is None:
            self.transport.resume_reading()
            self._answer()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def _answer(self) -> None:
        """Answer every complete head in the buffer (pipelining), in order."""
        assert self.transport is not None
        while not self.closing and self.paused_since is None and self.deferred is None:
            end = self.buffer.find(_END, self.scanned)
            if end < 0:
                self.scanned = max(0, len(self.buffer) - len(_END) + 1)
                if len(self.buffer) > MAX_HEAD:
                    self._too_large()
                return
            if end + len(_END) > MAX_HEAD:
                self._too_large()
                return
            head = bytes(self.buffer[: end + len(_END)])
            del self.buffer[: end + len(_END)]
            self.scanned = 0
            answer = respond_as(self.server.app, head, self.policy)
            if isinstance(answer, Pending):
                self._defer(head, answer)
                return
            if not self._send(*answer):
                return

    def _send(self, data: bytes, keep_alive: bool) -> bool:
        """Write one answer; ``False`` when the connection closes after it."""
        assert self.transport is not None
        self.transport.write(data)
        if not keep_alive:
            self.close()
            return False
        self.waiting_since = self.server.now()
        return True

    def _defer(self, head: bytes, pending: Pending) -> None:
        """Read nothing more until the bcrypt comparison is done, then answer in order."""
        assert self.transport is not None
        self.deferred = head
        self.transport.pause_reading()
        self.server.compare(pending).add_done_callback(self._compared)

    def _compared(self, future: asyncio.Future[bool]) -> None:
        head, self.deferred = self.deferred, None
        if self.closing or head is None or self.transport is None:
            return
        decided = False if future.cancelled() or future.exception() else future.result()
        answer = respond_as(self.server.app, head, self.policy, decided)
        assert not isinstance(answer, Pending)
        if self._send(*answer) and self.paused_since is None:
            self.transport.resume_reading()
            self._answer()

    def _too_large(self) -> None:
        assert self.transport is not None
        too_large = text(431, f"request head larger than {MAX_HEAD} bytes\n")
        self.transport.write(render(too_large, False, False))
        self.close()


def _dual_stack(port: int) -> list[socket.socket] | None:
    """One socket for IPv6 and IPv4 (``::`` with ``IPV6_V6ONLY`` off), so IPv6-only and IPv4
    clusters both reach the pod IP; ``None`` where the kernel has no IPv6."""
    if not socket.has_ipv6:
        return None
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
    except OSError as error:
        sock.close()
        if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return None  # IPv6 disabled (ipv6.disable=1, no ::1): IPv4 alone
        raise
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return [sock]


def _listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets: every address when ``host`` is empty (one
    dual-stack socket, or IPv4 where there is no IPv6), else every address it resolves to."""
    if not host:
        return _dual_stack(port) or _listening_sockets("0.0.0.0", port)
    name = host.encode("ascii") if host.isascii() else host  # no IDNA codec: host.sockets
    infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))  # one port for every address
            port = sock.getsockname()[1]
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Server:
    """Serves ``App`` on a TCP address; ``serve_forever`` returns when ``stop`` is called."""

    def __init__(
        self,
        app: App,
        host: str,
        port: int,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        *,
        gate: Gate | None = None,
    ) -> None:
        self.app = app
        self.gate = gate
        self._bcrypt: concurrent.futures.ThreadPoolExecutor | None = None
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._conns: dict[_Connection, None] = {}
        self._listeners: list[socket.socket] = []
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._spare: int | None = None
        self._resource_logged_at = float("-inf")
        self._refused = 0

    @property
    def connections(self) -> int:
        return len(self._conns)

    def now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    async def start(self) -> None:
        if self.gate is not None and self.gate.tls:
            _small_tls_buffers()
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._listeners = _listening_sockets(self.host, self.port)
        self.port = self._listeners[0].getsockname()[1]
        self._spare = _open_spare()
        for sock in self._listeners:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    async def serve_forever(self) -> None:
        if not self._listeners:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()
        await self._close()

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for sock in self._listeners:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        for conn in list(self._conns):
            conn.close()
        if self._bcrypt is not None:
            self._bcrypt.shutdown(wait=False, cancel_futures=True)
        await asyncio.sleep(0)

    # -- accepting ----------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:
                self._accept_failed(listener, error)
                return
            self._adopt(conn)

    def _adopt(self, conn: socket.socket) -> None:
        assert self._loop is not None
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context, policy = self.gate.current() if self.gate is not None else (None, None)
        task = self._loop.create_task(
            self._loop.connect_accepted_socket(
                lambda: _Connection(self, policy),
                sock=conn,
                ssl=context,
                ssl_handshake_timeout=self.idle_timeout if context is not None else None,
            )
        )
        task.add_done_callback(_close_on_failure(conn))

    def compare(self, pending: Pending) -> asyncio.Future[bool]:
        """A bcrypt comparison in the one worker thread (bcrypt releases the GIL)."""
        assert self._loop is not None
        if self._bcrypt is None:
            self._bcrypt = concurrent.futures.ThreadPoolExecutor(1, "selfcheck-bcrypt")
        return self._loop.run_in_executor(self._bcrypt, pending.auth.compute, pending.header)

    def _accept_failed(self, listener: socket.socket, error: OSError) -> None:
        """Back off instead of spinning; out of descriptors, first refuse what waits with a
        503 through the spare descriptor. One log line per ``RESOURCE_LOG_EVERY``."""
        exhausted = error.errno in _OUT_OF_RESOURCES
        if exhausted:
            self._refuse_waiting(listener)
        assert self._loop is not None
        self._loop.remove_reader(listener.fileno())
        self._loop.call_later(ACCEPT_BACKOFF, self._resume_accepting, listener)
        if self.now() - self._resource_logged_at >= RESOURCE_LOG_EVERY:
            self._resource_logged_at = self.now()
            event(
                get_logger(),
                logging.ERROR,
                "out of file descriptors: refusing connections with 503"
                if exhausted
                else "accept() failed: pausing",
                error=errno.errorcode.get(error.errno or 0, str(error)),
                connections=len(self._conns),
                refused_so_far=self._refused,
            )

    def _refuse_waiting(self, listener: socket.socket) -> None:
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        for _ in range(ACCEPT_BATCH):
            if not self._refuse_one(listener):
                break
        self._spare = _open_spare()

    def _refuse_one(self, listener: socket.socket) -> bool:
        """Accept one waiting client on the descriptor just freed, answer 503, close it."""
        try:
            conn, _ = listener.accept()
        except OSError:
            return False
        with conn, contextlib.suppress(OSError):
            conn.send(_REFUSAL)
        self._refused += 1
        return True

    def _resume_accepting(self, listener: socket.socket) -> None:
        if self._loop is not None and self._stopped is not None and not self._stopped.is_set():
            with contextlib.suppress(ValueError, OSError):
                self._loop.add_reader(listener.fileno(), self._accept, listener)

    # -- connections --------------------------------------------------------------

    def admit(self, conn: _Connection) -> None:
        if len(self._conns) >= self.max_connections:
            self._make_room()
        self._conns[conn] = None
        if self._sweeper is None:
            self._schedule_sweep()

    def forget(self, conn: _Connection) -> None:
        self._conns.pop(conn, None)

    def _make_room(self) -> None:
        """Evict the longest-waiting connection so new probes are never turned away.

        Connections in the middle of writing an answer are spared unless all are.
        """
        candidates = [c for c in self._conns if c.paused_since is None] or list(self._conns)
        if candidates:
            oldest = min(candidates, key=lambda c: c.waiting_since)
            self._conns.pop(oldest, None)
            oldest.abort()

    def _schedule_sweep(self) -> None:
        """Sweep while connections are open, and only then: a timer that fired twice a
        second with none open cost 10 ms of CPU every 30 s, a sixth of the pod's whole cost
        at the default interval (bench/results/footprint-helper.md)."""
        assert self._loop is not None
        period = max(0.05, min(0.5, self.idle_timeout / 4))
        self._sweeper = self._loop.call_later(period, self._sweep)

    def _sweep(self) -> None:
        """Close connections past their head deadline or stuck writing; one pass for all."""
        now = self.now()
        for conn in list(self._conns):
            if conn.paused_since is not None:
                if now - conn.paused_since > WRITE_TIMEOUT:
                    conn.abort()
            elif now - conn.waiting_since > self.idle_timeout:
                conn.close()
        self._sweeper = None
        if self._conns:
            self._schedule_sweep()


def _small_tls_buffers() -> None:
    """asyncio's ``SSLProtocol`` allocates ``max_size`` bytes per connection at creation; the
    class attribute is its only setting, and this process is its only user."""
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_SIZE


def _allowed_san(policy: Policy, transport: asyncio.Transport) -> bool:
    """exporter-toolkit's ``client_allowed_sans``, on the verified client certificate."""
    from selfcheck.http.webconfig import allowed_san

    if policy.config.tls.client_allowed_sans is None:
        return True
    return allowed_san(policy.config, transport.get_extra_info("peercert"))


def _open_spare() -> int | None:
    """One descriptor kept free for refusing clients politely when the process runs out."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _close_on_failure(conn: socket.socket) -> Callable[[asyncio.Task[object]], None]:
    def done(task: asyncio.Task[object]) -> None:
        if task.cancelled() or task.exception() is not None:
            conn.close()

    return done
