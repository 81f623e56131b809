"""A real ``selfcheck serve`` in a subprocess on loopback, for the robustness tests.

The server runs in its own process, as in the pod, so that the hostile clients these tests
play (hundreds of sockets, thousands of malformed requests) do not share its interpreter.
The checks that need a daemon this machine does not run here (the runtime and DogStatsD
sockets, the Agent's health port) are skipped through ``SELFCHECK_SKIP`` so that
``/readyz`` answers 200: these tests are about the server, the checks have their own.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.run import base_env, stop

SKIP = "runtime_socket,dogstatsd_socket,agent_health,apm_socket"


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    final_log: str | None = None

    def request(self, path: str, timeout: float = 1.0) -> tuple[int, bytes, float]:
        """Status, body and seconds for one GET on a fresh connection (as the kubelet does)."""
        began = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            reply = read_all(sock)
        head, _, body = reply.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
        return status, body, time.monotonic() - began

    def wait_for(self, path: str, status: int = 200, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr()
            with contextlib.suppress(OSError):
                last = self.request(path)[0]
                if last == status:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{path} never answered {status} (last: {last}): {self.stderr()}")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def log_text(self) -> str:
        """Everything the server logged; kept after it stopped and its file is gone."""
        if self.final_log is not None:
            return self.final_log
        return self.log.read_text(errors="replace")

    def stderr(self) -> str:
        return self.log_text()[-4000:]


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(
    env: Mapping[str, str] | None = None, nofile: int | None = None
) -> Iterator[ServeProcess]:
    """``selfcheck serve`` on a free loopback port; ``nofile`` lowers ``RLIMIT_NOFILE``
    with ``prlimit`` (util-linux), the way ``ulimit -n`` would before the process starts."""
    port = free_port()
    full = {
        "SELFCHECK_LISTEN": f"127.0.0.1:{port}",
        "SELFCHECK_INTERVAL": "1",
        "SELFCHECK_SKIP": SKIP,
        **(env or {}),
    }
    limit = [] if nofile is None else ["prlimit", f"--nofile={nofile}:{nofile}"]
    with tempfile.NamedTemporaryFile(prefix="selfcheck-serve-", suffix=".log") as log:
        proc = subprocess.Popen(
            [*limit, sys.executable, "-m", "selfcheck", "serve"],
            env=base_env(full),
            stdout=log,
            stderr=log,
            cwd="/",
        )
        server = ServeProcess(proc, port, Path(log.name))
        try:
            server.wait_for("/readyz")
            yield server
        finally:
            stop(proc)
            server.final_log = server.log_text()


@pytest.fixture
def served() -> Iterator[ServeProcess]:
    with serve() as server:
        yield server


def raise_nofile(wanted: int) -> None:
    """This test process holds hundreds of sockets: lift its own soft limit if it must."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} open files, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
