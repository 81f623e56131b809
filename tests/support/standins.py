"""Stand-ins for the Datadog Agent's own endpoints, which cannot run on the test machine.

The Agent's image cannot be pulled here, so the sockets and ports it serves are played by
these small servers, built to behave the way the Agent's code does (the sources
named below). Everything else in the tests (containerd, dockerd, other users,
namespaces) is real.

- ``DogStatsDReceiver``: comp/dogstatsd/listeners/uds_*.go: a ``unixgram`` socket with
  ``SO_PASSCRED`` set and then ``chmod 0722``; it records every datagram with the sender's
  ``SCM_CREDENTIALS`` (pid, uid, gid). ``reading=False`` leaves the queue unread so it fills.
- ``TraceAgentStandIn``: pkg/trace/api/info.go: ``GET /info`` on the APM unix socket answers
  JSON with ``version``, ``git_commit``, ``endpoints``, ``config``.
- ``AgentHTTPStandIn``: the health port (comp/core/healthprobe: ``/live``, ``/ready``,
  ``/startup`` answer ``{"Healthy": [...], "Unhealthy": [...]}``, 500 when any component is
  unhealthy) and the expvar port (``/debug/vars`` with the ``dogstatsd-uds`` map).
- ``WedgedListener``: accepts connections and never answers (a hung daemon).
- ``stale_socket``: a socket file left behind by a process that is gone.
- ``agent_standin``: tests/support/agent_standin.py (the DogStatsD listener and expvar port
  counting like the Agent) in a process of its own; behind ``private_loopback``'s prefix, in a
  network namespace of its own, where its port must be the Agent's fixed one.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.support.run import REPO, stop

AGENT_VERSION = "7.81.1"
_UCRED = struct.Struct("3i")


@dataclass(frozen=True, slots=True)
class Datagram:
    """One packet as the Agent's listener sees it: the bytes and the sender's credentials."""

    data: bytes
    pid: int | None
    uid: int | None
    gid: int | None


class DogStatsDReceiver:
    """The Agent's DogStatsD ``unixgram`` listener: ``SO_PASSCRED``, mode 0722, records packets."""

    def __init__(
        self, path: Path, mode: int = 0o722, passcred: bool = True, reading: bool = True
    ) -> None:
        self.path = Path(path)
        self.mode = mode
        self.passcred = passcred
        self.reading = reading
        self.packets: list[Datagram] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._arrived = threading.Condition()

    def __enter__(self) -> DogStatsDReceiver:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        if self.passcred:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.path.chmod(self.mode)
        sock.settimeout(0.1)
        self._sock = sock
        if self.reading:
            self._thread = threading.Thread(target=self._serve, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        assert self._sock is not None
        space = socket.CMSG_SPACE(_UCRED.size)
        while not self._stop.is_set():
            try:
                data, ancillary, _flags, _addr = self._sock.recvmsg(65536, space)
            except TimeoutError:
                continue
            except OSError:
                return
            pid = uid = gid = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, uid, gid = _UCRED.unpack(payload[: _UCRED.size])
            with self._arrived:
                self.packets.append(Datagram(data, pid, uid, gid))
                self._arrived.notify_all()

    def drain(self) -> list[bytes]:
        """Everything waiting in the unread queue (``reading=False``), read until it is empty."""
        assert self._sock is not None and self._thread is None
        queued = []
        with contextlib.suppress(TimeoutError):
            while True:
                queued.append(self._sock.recv(65536))
        return queued

    def start_reading(self) -> None:
        """Start recording packets, as a receiver that was not reading (``reading=False``)
        would once its reader catches up."""
        assert self._thread is None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[Datagram]:
        """The packets once ``count`` have arrived (or whatever arrived within ``timeout``)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.packets) >= count, timeout)
            return list(self.packets)

    def fill(self) -> int:
        """Send from here until the unread queue refuses more (``EAGAIN``); returns the count."""
        sent = 0
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.setblocking(False)
            sender.connect(str(self.path))
            while sent < 100_000:
                try:
                    sender.send(b"filler:1|c")
                except BlockingIOError:
                    return sent
                sent += 1
        raise AssertionError("the receive queue never filled")


class _QuietHandler(BaseHTTPRequestHandler):
    """Answers GET from the server's ``routes`` table (path -> status, JSON body; a ``bytes``
    body is sent as it is, as text)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status, payload = self.server.routes.get(  # type: ignore[attr-defined]
            self.path.split("?")[0], (404, {"error": "not found"})
        )
        raw = isinstance(payload, bytes)
        body = payload if raw else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if raw else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def address_string(self) -> str:
        return "unix"


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    routes: dict[str, tuple[int, Any]]


class _TCPHTTPServer(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    routes: dict[str, tuple[int, Any]]


class _Serving:
    """Runs a socketserver in a thread for the ``with`` block."""

    server: socketserver.BaseServer

    def __enter__(self) -> Any:
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2)


def trace_agent_info(version: str = AGENT_VERSION) -> dict[str, Any]:
    """The shape of the trace-agent's ``/info`` answer (pkg/trace/api/info.go)."""
    return {
        "version": version,
        "git_commit": "0123abcd",
        "endpoints": ["/v0.3/traces", "/v0.4/traces", "/v0.5/traces", "/v0.7/traces", "/info"],
        "feature_flags": [],
        "client_drop_p0s": True,
        "span_meta_structs": True,
        "long_running_spans": True,
        "config": {"default_env": "none", "receiver_port": 8126, "receiver_socket": ""},
    }


class _UnixStandIn(_Serving):
    """An HTTP API on a unix socket at ``path`` with ``mode``, answering ``routes``; the socket
    file is replaced at start and removed at the end, as the daemons do."""

    def __init__(self, path: Path, routes: dict[str, tuple[int, Any]], mode: int) -> None:
        self.path = Path(path)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        server = _UnixHTTPServer(str(self.path), _QuietHandler)
        server.routes = routes
        self.path.chmod(mode)
        self.server = server

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class TraceAgentStandIn(_UnixStandIn):
    """The trace-agent's APM receiver on a unix socket: ``GET /info`` like the real one."""

    def __init__(self, path: Path, version: str = AGENT_VERSION, mode: int = 0o722) -> None:
        super().__init__(path, {"/info": (200, trace_agent_info(version))}, mode)


class DockerStandIn(_UnixStandIn):
    """The Docker Engine API's ``/_ping`` and ``/version`` on a unix socket, owned by root and
    mode 0660 like dockerd's (the engine itself is not needed to prove who may connect)."""

    def __init__(self, path: Path, version: str = "24.0.7", mode: int = 0o660) -> None:
        routes = {
            "/_ping": (200, b"OK"),
            "/version": (200, {"Version": version, "ApiVersion": "1.43"}),
        }
        super().__init__(path, routes, mode)


@dataclass
class AgentHTTPStandIn(_Serving):
    """The Agent's health port and expvar port on loopback (an ephemeral port unless given)."""

    healthy: Sequence[str] = ("aggregator", "dogstatsd-main", "forwarder", "collector-queue")
    unhealthy: Sequence[str] = ()
    uds_counters: dict[str, int] = field(
        default_factory=lambda: {
            "OriginDetectionErrors": 3,
            "PacketReadingErrors": 1,
            "Packets": 42,
            "Bytes": 4200,
        }
    )
    port: int = 0

    def __post_init__(self) -> None:
        server = _TCPHTTPServer(("127.0.0.1", self.port), _QuietHandler)
        self.port = server.server_address[1]
        self.server = server
        self.update()

    def update(self) -> None:
        health = {"Healthy": list(self.healthy), "Unhealthy": list(self.unhealthy)}
        status = 500 if self.unhealthy else 200
        self.server.routes = {  # type: ignore[attr-defined]
            "/live": (status, health),
            "/ready": (status, health),
            "/startup": (status, health),
            "/debug/vars": (
                200,
                {"cmdline": ["agent", "run"], "dogstatsd-uds": dict(self.uds_counters)},
            ),
        }


class WedgedListener:
    """Accepts connections (unix or TCP) and never answers: a hung daemon. With ``trickle``
    it sends those bytes to each client one every ``step`` seconds instead: a peer whose
    every byte comes well inside a per-read timeout and whose answer never ends in time."""

    def __init__(
        self,
        path: Path | None = None,
        kind: int = socket.SOCK_STREAM,
        trickle: bytes = b"",
        step: float = 0.2,
    ) -> None:
        self.trickle, self.step = trickle, step
        self.path = Path(path) if path is not None else None
        family = socket.AF_UNIX if path is not None else socket.AF_INET
        self._sock = socket.socket(family, kind)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._sock.bind(str(self.path))
            self.path.chmod(0o777)
        else:
            self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1] if self.path is None else 0
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> WedgedListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._held:
            conn.close()
        self._sock.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)
            if self.trickle:
                threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        for byte in self.trickle:
            if self._stop.wait(self.step):
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return


def stale_socket(path: Path, kind: int = socket.SOCK_DGRAM) -> Path:
    """A socket file whose listener is gone: bind, then close without unlinking."""
    with socket.socket(socket.AF_UNIX, kind) as sock:
        sock.bind(str(path))
    return Path(path)


def stream_socket(path: Path) -> socket.socket:
    """A listening stream socket where a datagram socket is expected; caller closes it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(4)
    return sock


@contextlib.contextmanager
def free_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound and released, so nothing gets it soon)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    yield port


@contextlib.contextmanager
def private_loopback() -> Iterator[list[str]]:
    """A network namespace of its own, its loopback up: yields the ``nsenter`` prefix that runs
    a command in it, so a test can hold a fixed port (the Agent's expvar 5000) whatever this
    machine already listens on. The namespace's holder reads its standard input and ends when
    the test stops it, or when the test process itself is gone (its end of the pipe closes)."""
    holder = subprocess.Popen(
        ["unshare", "--net", "sh", "-euc", "ip link set lo up; echo up; exec head -c1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "up":
            raise AssertionError(f"no private network namespace: {holder.communicate(timeout=10)}")
        yield ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
    finally:
        stop(holder)
        holder.communicate(timeout=10)


@contextlib.contextmanager
def agent_standin(
    directory: Path,
    port: int,
    *args: str,
    pid_namespace: bool = False,
    prefix: Sequence[str] = (),
) -> Iterator[Path]:
    """tests/support/agent_standin.py in a process of its own, behind ``prefix`` (for instance
    ``private_loopback``'s), in a child PID namespace if asked."""
    sock = directory / "dsd.socket"
    if pid_namespace:
        prefix = [*prefix, "unshare", "--pid", "--fork", "--kill-child"]
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "tests.support.agent_standin", str(sock), str(port), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            _, err = proc.communicate(timeout=10)
            if "Address already in use" in err:
                pytest.skip(f"127.0.0.1:{port} is taken on this machine")
            raise AssertionError(f"the Agent stand-in did not start: {err}")
        yield sock
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
