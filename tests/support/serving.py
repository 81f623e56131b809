"""An in-process ``selfcheck`` server on a loopback port, driven by a real Runner."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from selfcheck.config import Config
from selfcheck.http.server import Server
from selfcheck.registry import CheckSpec
from selfcheck.runner import Runner
from selfcheck.service import build_app


@dataclass
class Served:
    runner: Runner
    server: Server
    port: int

    def get(
        self, path: str, method: str = "GET", headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, headers=dict(headers or {}))
            response = conn.getresponse()
            return (
                response.status,
                response.read(),
                {k.lower(): v for k, v in response.getheaders()},
            )
        finally:
            conn.close()

    def raw(self, data: bytes, read: int = 65536) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(data)
            chunks = []
            while True:
                try:
                    chunk = sock.recv(read)
                except (ConnectionResetError, TimeoutError):
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)


@contextmanager
def serving(
    config: Config,
    checks: Mapping[str, CheckSpec],
    start_runner: bool = False,
    max_connections: int = 512,
    idle_timeout: float = 5.0,
) -> Iterator[Served]:
    runner = Runner(config, checks)
    server = Server(build_app(runner), "127.0.0.1", 0, max_connections, idle_timeout)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_until_complete(server.serve_forever())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    if start_runner:
        runner.start()
    try:
        yield Served(runner, server, server.port)
    finally:
        runner.stop()
        loop.call_soon_threadsafe(server.stop)
        thread.join(5)
        loop.close()
