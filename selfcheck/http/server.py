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

Defences, each a user-visible promise: requests larger than ``MAX_HEAD`` get 431 and are
closed; a client that has not sent a whole request head within ``IDLE_TIMEOUT`` of the
server starting to wait for it is closed (trickling bytes does not extend it); a client
that stops reading its answers is closed after ``WRITE_TIMEOUT`` and, meanwhile, no more
of its requests are read; at ``max_connections`` the longest-waiting connection is
evicted so a fresh kubelet probe is always served; anything but GET and HEAD gets 405.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from selfcheck.http.app import App, Response, text

MAX_HEAD = 8192
IDLE_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
MAX_CONNECTIONS = 512
MAX_HEADERS = 64
_ALLOWED = ("GET", "HEAD")
_END = b"\r\n\r\n"
_PHRASES = {s.value: s.phrase for s in HTTPStatus}


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
    if len(parts) != 3 or not parts[1] or not parts[2].startswith("HTTP/1."):
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


def render(response: Response, head_only: bool, keep_alive: bool) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in response.extra_headers)
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


def respond(app: App, head: bytes) -> tuple[bytes, bool]:
    """The bytes to send for one request head, and whether the connection stays open."""
    try:
        request = parse_head(head)
    except BadRequestError as bad:
        return render(bad.response, False, False), False
    response = app.handle(request.target, request.headers.get("accept", ""))
    keep_alive = request.keep_alive
    return render(response, request.method == "HEAD", keep_alive), keep_alive


class _Connection(asyncio.Protocol):
    """One client: requests are answered in order, straight from ``data_received``."""

    def __init__(self, server: Server) -> None:
        self.server = server
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
        if self.transport is not None and not self.closing:
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
        while not self.closing and self.paused_since is None:
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
            data, keep_alive = respond(self.server.app, head)
            self.transport.write(data)
            if not keep_alive:
                self.close()
                return
            self.waiting_since = self.server.now()

    def _too_large(self) -> None:
        assert self.transport is not None
        too_large = text(431, f"request head larger than {MAX_HEAD} bytes\n")
        self.transport.write(render(too_large, False, False))
        self.close()


class Server:
    """Serves ``App`` on a TCP address; ``serve_forever`` returns when ``stop`` is called."""

    def __init__(
        self,
        app: App,
        host: str,
        port: int,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._conns: dict[_Connection, None] = {}
        self._server: asyncio.Server | None = None
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def connections(self) -> int:
        return len(self._conns)

    def now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._server = await self._loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=1024, reuse_address=True
        )
        sockets = self._server.sockets
        if sockets and self.port == 0:
            self.port = sockets[0].getsockname()[1]
        self._schedule_sweep()

    async def serve_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        if self._server is None:
            await self.start()
        if on_ready is not None:
            on_ready()
        assert self._stopped is not None
        await self._stopped.wait()
        await self._close()

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.close()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 0.5)

    def admit(self, conn: _Connection) -> None:
        if len(self._conns) >= self.max_connections:
            self._make_room()
        self._conns[conn] = None

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
        self._schedule_sweep()
