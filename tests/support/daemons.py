"""Real containerd and dockerd, started on temporary sockets for the whole test session.

The tests prove checks against the real daemons (docs/architecture.md), never against a fake:
the versions a check reports must be the ones these binaries have. Each daemon runs in its
own session (process group) with its sockets, data root, exec root and pid file under one
temporary directory, so it cannot touch a daemon the machine may already run. Readiness
is waited for with a bounded timeout (the daemon's log tail is in the failure), and at the
end of the session the daemon and every process it started (dockerd's own containerd,
shims, containers) are stopped, leftover mounts under the directory are detached and the
directory is removed.

Fixtures (session-scoped; a test that uses one needs ``@pytest.mark.docker`` or
``@pytest.mark.containerd``):

- ``containerd_daemon`` / ``containerd_socket``: a standalone containerd with its CRI plugin.
- ``dockerd_daemon`` / ``dockerd_socket`` / ``docker_host`` (``unix://...``).
- ``socket_dir`` (per test): a short 0755 directory under /tmp for unix sockets.
- ``busybox_image``: ``local/busybox`` imported into that dockerd from Debian's static
  busybox (no registry is reachable here); run it with ``dockerd_daemon.cli("run", ...)``.

Without the binary (a developer machine) or without root the fixtures skip with the reason;
a daemon that is installed but does not come up fails the test with its log.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

BUSYBOX = "/bin/busybox"
BUSYBOX_IMAGE = "local/busybox"
CONTAINERD_READY_TIMEOUT = 30.0
DOCKERD_READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class DaemonError(RuntimeError):
    """The daemon did not come up; the message carries the tail of its log."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a unix socket, enough to talk to the Docker Engine API."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def engine_request(
    socket_path: str | os.PathLike[str],
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """One Docker Engine API request over its unix socket: ``(status, body)``."""
    conn = _UnixHTTPConnection(str(socket_path), timeout)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Daemon:
    """One daemon process started by the fixtures, and where its files are."""

    name: str
    directory: Path
    socket: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    children: set[int] = field(default_factory=set)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def start(self, argv: list[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={"PATH": _PATH, "HOME": str(self.directory), "TMPDIR": str(self.directory)},
            )

    def wait_ready(self, probe: Callable[[], bool], timeout: float) -> None:
        """Poll ``probe`` until it answers or ``timeout``; fail early if the daemon exits."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DaemonError(
                    f"{self.name} exited with {self.process.returncode} before it was ready; "
                    f"log {self.log}:\n{self.log_tail()}"
                )
            with contextlib.suppress(
                OSError, http.client.HTTPException, subprocess.SubprocessError
            ):
                if probe():
                    return
            time.sleep(0.1)
        raise DaemonError(
            f"{self.name} not ready within {timeout:g} s on {self.socket}; "
            f"log {self.log}:\n{self.log_tail()}"
        )

    def remember_children(self) -> None:
        """Record descendants now: once the daemon dies they are reparented and lost to us."""
        if self.process is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self.children.add(child.pid)

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL for the daemon, its group and its children."""
        process = self.process
        if process is None:
            return
        self.remember_children()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)
        for pid in self.children:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        self._kill_strays()
        self.process = None

    def _kill_strays(self) -> None:
        """Kill what escaped the daemon's tree: containerd shims re-parent themselves to PID 1
        (and hold the containers), but their command lines name our directory."""
        marker = str(self.directory)
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(marker in arg for arg in proc.info["cmdline"] or ()):
                    for child in proc.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            child.kill()
                    proc.kill()

    def cleanup(self) -> None:
        _detach_mounts_under(self.directory)
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class DockerDaemon(Daemon):
    """A dockerd; ``host`` is what ``DOCKER_HOST`` takes, ``cli`` runs the docker client on it."""

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def cli(
        self, *args: str, check: bool = True, timeout: float = 60.0, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this daemon, output captured as text."""
        env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.directory / "cli")}
        return subprocess.run(
            ["docker", *args],
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=check,
        )

    def request(self, method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
        return engine_request(self.socket, method, url, body)

    def version(self) -> str:
        """The server version from ``GET /version`` (e.g. ``20.10.24+dfsg1``)."""
        status, body = self.request("GET", "/version")
        assert status == 200, body
        return str(json.loads(body)["Version"])


@dataclass
class ContainerdDaemon(Daemon):
    """A standalone containerd; ``ctr`` runs the client on its socket."""

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def version(self) -> str:
        """The server version as ``ctr version`` prints it (e.g. ``1.6.20~ds1``)."""
        out = self.ctr("version").stdout
        server = out.split("Server:", 1)[1]
        for line in server.splitlines():
            key, _, value = line.strip().partition(":")
            if key.strip() == "Version":
                return value.strip()
        raise AssertionError(f"no server version in: {out}")


def _detach_mounts_under(directory: Path) -> None:
    """Lazily unmount anything a daemon left mounted below ``directory`` (deepest first)."""
    prefix = str(directory.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[4] for line in lines if len(line.split()) > 4]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=10)


def _require(binary: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{binary} needs root")
    if shutil.which(binary, path=_PATH) is None:
        pytest.skip(f"{binary} is not installed (Debian package; .ci/run installs it)")


def short_dir(name: str) -> Path:
    """A short, world-searchable directory under /tmp.

    Unix socket paths must stay under 108 bytes (pytest's ``tmp_path`` can be longer), and
    mode 0755 lets tests that run as UID 100 reach a socket inside, so that the socket's
    own mode is what decides.
    """
    path = Path(tempfile.mkdtemp(prefix=f"sc-{name}-", dir="/tmp"))
    path.chmod(0o755)
    return path


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        sock.connect(str(path))
    return True


def start_containerd(directory: Path | None = None) -> ContainerdDaemon:
    """Start containerd with root, state and socket under ``directory``; wait until it answers."""
    directory = directory or short_dir("containerd")
    daemon = ContainerdDaemon(
        "containerd", directory, directory / "containerd.sock", directory / "log"
    )
    config = directory / "config.toml"
    directory.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "version = 2\n"
        f'root = "{directory / "root"}"\n'
        f'state = "{directory / "state"}"\n'
        "[grpc]\n"
        f'  address = "{daemon.socket}"\n'
        "[metrics]\n"
        '  address = ""\n'
    )
    daemon.start(["containerd", "--config", str(config)])
    try:
        daemon.wait_ready(
            lambda: (
                _socket_answers(daemon.socket) and daemon.ctr("version", timeout=5).returncode == 0
            ),
            CONTAINERD_READY_TIMEOUT,
        )
    except BaseException:
        daemon.stop()
        daemon.cleanup()
        raise
    return daemon


def start_dockerd(directory: Path | None = None) -> DockerDaemon:
    """Start dockerd (no iptables, no bridge) with all its files under ``directory``."""
    directory = directory or short_dir("dockerd")
    daemon = DockerDaemon("dockerd", directory, directory / "docker.sock", directory / "log")
    argv = [
        "dockerd",
        "--host", f"unix://{daemon.socket}",
        "--data-root", str(directory / "data"),
        "--exec-root", str(directory / "exec"),
        "--pidfile", str(directory / "docker.pid"),
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--shutdown-timeout", "5",
        "--config-file", str(directory / "daemon.json"),
    ]  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "daemon.json").write_text("{}\n")
    daemon.start(argv)

    def pinged() -> bool:
        status, body = engine_request(daemon.socket, "GET", "/_ping", timeout=2.0)
        return status == 200 and body == b"OK"

    try:
        daemon.wait_ready(pinged, DOCKERD_READY_TIMEOUT)
    except BaseException:
        daemon.stop()
        daemon.cleanup()
        raise
    return daemon


def busybox_tar(busybox: str = BUSYBOX) -> bytes:
    """A root filesystem holding only a static busybox and its applet links, as a tar."""
    listing = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in listing.stdout.split():
            if applet != "busybox" and "/" not in applet:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type = tarfile.SYMTYPE
                link.linkname = "busybox"
                tar.addfile(link)
    return buffer.getvalue()


def import_busybox(daemon: DockerDaemon, image: str = BUSYBOX_IMAGE) -> str:
    """``docker import`` of Debian's static busybox as ``image`` through the Engine API."""
    repo, _, tag = image.partition(":")
    status, body = engine_request(
        daemon.socket,
        "POST",
        f"/images/create?fromSrc=-&repo={repo}&tag={tag or 'latest'}",
        body=busybox_tar(),
        headers={"Content-Type": "application/x-tar"},
        timeout=120.0,
    )
    if status != 200 or b'"error"' in body:
        raise DaemonError(f"importing {image} failed with HTTP {status}: {body[-500:]!r}")
    return image if tag else f"{image}:latest"


@contextlib.contextmanager
def _running(start: Callable[[], Daemon]) -> Iterator[Daemon]:
    try:
        daemon = start()
    except DaemonError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield daemon
    finally:
        daemon.stop()
        daemon.cleanup()


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A fresh short directory for unix sockets (see ``short_dir``), removed afterwards."""
    path = short_dir("sock")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def containerd_daemon() -> Iterator[ContainerdDaemon]:
    _require("containerd")
    with _running(start_containerd) as daemon:
        assert isinstance(daemon, ContainerdDaemon)
        yield daemon


@pytest.fixture(scope="session")
def containerd_socket(containerd_daemon: ContainerdDaemon) -> Path:
    return containerd_daemon.socket


@pytest.fixture(scope="session")
def dockerd_daemon() -> Iterator[DockerDaemon]:
    _require("dockerd")
    with _running(start_dockerd) as daemon:
        assert isinstance(daemon, DockerDaemon)
        yield daemon


@pytest.fixture(scope="session")
def dockerd_socket(dockerd_daemon: DockerDaemon) -> Path:
    return dockerd_daemon.socket


@pytest.fixture(scope="session")
def docker_host(dockerd_daemon: DockerDaemon) -> str:
    """The value for ``DOCKER_HOST``: ``unix://<tmp>/docker.sock``."""
    return dockerd_daemon.host


@pytest.fixture(scope="session")
def busybox_image(dockerd_daemon: DockerDaemon) -> str:
    """``local/busybox:latest`` in the session's dockerd; ``docker run IMAGE sh -c '...'`` works."""
    if not Path(BUSYBOX).is_file():
        pytest.skip(f"{BUSYBOX} is missing (Debian package busybox-static)")
    try:
        return import_busybox(dockerd_daemon)
    except DaemonError as error:
        pytest.fail(str(error), pytrace=False)
