"""origin_detection against real Datadog clients from PyPI, in real containers.

The official ``datadog`` (datadogpy, DogStatsD with its own origin detection) and ``ddtrace``
(APM) packages are installed into an image built here on the debootstrapped Debian base
(.ci/base-image.sh, whose root file system is cached under /var/cache/selfcheck-test). Two
containers of it run in their own PID namespaces, one in the host cgroup namespace and one in
a private one, and send DogStatsD metrics and traces, as often as they can, to sockets
bind-mounted from the test.

The receiver (tests/support/origin_receiver.py) plays the Agent's sockets and applies the
Agent's rules to what actually arrives: the ``SO_PASSCRED`` PID, the ``c:`` field, the APM
connection's ``SO_PEERCRED`` and origin headers. Each scenario runs the receiver and
``selfcheck`` under the same conditions and asserts that selfcheck's verdict for each mechanism
is what happened to those real clients' packets: tagged where it says the mechanism works,
untagged where it says it does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from selfcheck.checks.origin_detection.texts import INODE_CLIENTS
from tests.checks.origin_detection.test_check import ONLY
from tests.support.daemons import DockerDaemon, short_dir
from tests.support.run import REPO, base_env, in_shell, python_command

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.slow]

DATADOG, DDTRACE = "0.56.0", "4.16.0"
IMAGE = f"local/dd-clients:{DATADOG}-{DDTRACE}"
BASE_IMAGE = "local/bookworm-python:latest"
BUILD_TIMEOUT = 900.0
BOTH = {"DD_DOGSTATSD_ORIGIN_DETECTION": "true", "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT": "true"}

CLIENT = """
import sys, time
from datadog.dogstatsd.base import DogStatsd
try:
    from ddtrace.trace import tracer
except ImportError:
    from ddtrace import tracer
name = sys.argv[1]
statsd = DogStatsd(socket_path="/var/run/datadog/dsd.socket")
print("origin", statsd._container_id, flush=True)
while True:
    statsd.increment("selfcheck.test.client", tags=["origin:client-" + name])
    with tracer.trace("selfcheck.test", service="client-" + name):
        pass
    tracer.flush()
    time.sleep(0.2)
"""

TRACER_ENV = {
    "DD_TRACE_AGENT_URL": "unix:///var/run/datadog/apm.socket",
    "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
    "DD_REMOTE_CONFIGURATION_ENABLED": "false",
    "DD_TRACE_STARTUP_LOGS": "false",
    "DD_TRACE_RATE_LIMIT": "1000",
}

DOCKERFILE = f"""FROM {BASE_IMAGE}
RUN python3 -m venv /opt/dd && /opt/dd/bin/pip install --no-cache-dir \\
    datadog=={DATADOG} ddtrace=={DDTRACE}
"""


def _build(docker: DockerDaemon) -> None:
    """Build on the cached Debian base; pip trusts the machine's CA there (.ci/base-image.sh)."""
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed (Debian package debootstrap)")
    env = {**os.environ, "DOCKER_HOST": docker.host, "DOCKER_CONFIG": str(docker.directory)}
    subprocess.run(
        [str(REPO / ".ci" / "base-image.sh"), BASE_IMAGE],
        env=env,
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT,
    )
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Dockerfile").write_text(DOCKERFILE)
        built = subprocess.run(
            ["docker", "build", "--network", "host", "-t", IMAGE, context],
            env={**env, "DOCKER_BUILDKIT": "0"},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    if built.returncode != 0:
        pytest.fail(f"building {IMAGE} failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}")


@pytest.fixture(scope="session")
def client_image(dockerd_daemon: DockerDaemon) -> str:
    """The image with datadog and ddtrace from PyPI, built once per session.

    Not cached as a tarball: building on the cached base took 27 s here, loading the saved
    246 MB image took longer than that.
    """
    _build(dockerd_daemon)
    return IMAGE


@dataclass
class Client:
    name: str
    container: str
    id: str


@pytest.fixture(scope="module")
def clients(
    dockerd_daemon: DockerDaemon, client_image: str
) -> Iterator[tuple[Path, dict[str, Client]]]:
    """``a`` in the host cgroup namespace, ``b`` in a private one; both in their own PID one."""
    directory = short_dir("clients")
    directory.chmod(0o777)
    started: dict[str, Client] = {}
    try:
        for name, cgroupns in (("a", "host"), ("b", "private")):
            env = [arg for key, value in TRACER_ENV.items() for arg in ("-e", f"{key}={value}")]
            container = f"sc-client-{name}-{os.getpid()}"
            dockerd_daemon.cli(
                "run", "-d", "--name", container, "--network", "none",
                "--cgroupns", cgroupns, "-v", f"{directory}:/var/run/datadog", *env,
                client_image, "/opt/dd/bin/python", "-c", CLIENT, name,
            )  # fmt: skip
            cid = dockerd_daemon.cli("inspect", "-f", "{{.Id}}", container).stdout.strip()
            started[name] = Client(name, container, cid)
        yield directory, started
    finally:
        names = [c.container for c in started.values()]
        if names:
            dockerd_daemon.cli("rm", "-f", *names, check=False)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def receiver(
    directory: Path, cgroup_root: str = "/sys/fs/cgroup", own_pid_namespace: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """The Agent's sockets, in the host PID namespace or (no hostPID) a child one."""
    argv = [*python_command()[:1], "-m", "tests.support.origin_receiver", str(directory)]
    if own_pid_namespace:
        host = directory.parent / f"{directory.name}-hostproc"
        host.mkdir(exist_ok=True)
        inner = shlex.join([*argv, str(host), cgroup_root])
        argv = [
            "unshare", "-m", "--propagation", "private", "sh", "-c",
            f"mount --bind /proc {host} && exec unshare --pid --fork --mount-proc {inner}",
        ]  # fmt: skip
    else:
        argv += ["/proc", cgroup_root]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=base_env(), cwd=REPO
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def collect(proc: subprocess.Popen[str], timeout: float = 60) -> dict[tuple[str, str], Any]:
    """Wait for a DogStatsD packet and a trace payload from each client, then the verdicts.

    Packets without a client's tag (the tracer's own metrics, sent on its own schedule) may
    come too: every client heard is what is waited for, not exactly those."""
    assert proc.stdout is not None and proc.stdin is not None
    wanted = {(k, w) for k in ("dogstatsd", "apm") for w in ("a", "b")}
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + timeout
    while not wanted <= seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("event "):
            _, kind, who = line.split()
            seen.add((kind, who))
    proc.stdin.close()
    result: list[dict[str, Any]] = []
    for line in proc.stdout:
        if line.startswith("result "):
            result = json.loads(line.removeprefix("result "))
    assert wanted <= seen, f"not every client was heard from: {seen}"
    last: dict[tuple[str, str], Any] = {}
    for event in result:
        last[(event["kind"], event["who"])] = event
    return last


def _check(argv_env: dict[str, str], script: str | None = None) -> dict[str, Any]:
    env = {"SELFCHECK_SAMPLE": "100000", **argv_env}
    run = in_shell(script or f"exec $SELFCHECK {' '.join(ONLY)}", env)
    return run.check("origin_detection")


def _mechanism(result: dict[str, Any], name: str) -> str:
    return str(result["details"]["mechanisms"][name]["status"])


def test_with_host_pid_every_mechanism_tags_real_clients(
    clients: tuple[Path, dict[str, Client]],
) -> None:
    directory, started = clients
    a, b = started["a"], started["b"]
    with receiver(directory) as proc:
        heard = collect(proc)
    # what the Agent's rules made of the real packets
    for kind in ("dogstatsd", "apm"):
        assert heard[kind, "a"]["uds_container"] == a.id, heard
        assert heard[kind, "b"]["uds_container"] == b.id, heard
    assert heard["dogstatsd", "a"]["origin"] == f"ci-{a.id}"
    assert heard["dogstatsd", "a"]["client_container"] == a.id
    assert str(heard["dogstatsd", "b"]["origin"]).startswith("in-")
    assert heard["dogstatsd", "b"]["client_container"] == b.id
    assert heard["apm", "b"]["client_container"] == b.id
    # and selfcheck's verdict on the same node
    result = _check({"HOST_PROC": "/proc", **BOTH})
    assert (result["status"], result["reason"]) == ("ok", "ok"), result
    for name in ("uds", "client_inode", "client_container_id"):
        assert _mechanism(result, name) == "ok", (name, result)


def test_without_host_pid_uds_fails_and_inode_clients_are_still_tagged(
    clients: tuple[Path, dict[str, Client]], tmp_path: Path
) -> None:
    directory, started = clients
    a, b = started["a"], started["b"]
    with receiver(directory, own_pid_namespace=True) as proc:
        heard = collect(proc)
    for kind in ("dogstatsd", "apm"):
        for who in ("a", "b"):
            assert (heard[kind, who]["pid"], heard[kind, who]["uds_container"]) == (0, None)
    assert heard["dogstatsd", "a"]["client_container"] == a.id
    assert heard["dogstatsd", "b"]["client_container"] == b.id
    script = (
        f"unshare -m --propagation private sh -c 'mount --bind /proc {tmp_path} && "
        f"exec unshare --pid --fork --mount-proc $SELFCHECK {' '.join(ONLY)}'"
    )
    result = _check({"HOST_PROC": str(tmp_path), **BOTH}, script)
    assert (result["status"], result["reason"]) == ("failed", "not_host_pid"), result
    assert _mechanism(result, "uds") == "failed"
    assert _mechanism(result, "client_inode") == "ok"
    message = str(result["message"])
    assert message.startswith("UDS origin detection is off (no hostPID)")
    assert f"{INODE_CLIENTS} are still tagged" in message
    assert INODE_CLIENTS == (
        "clients that send their cgroup inode (datadog-go 5.x, datadogpy, Agent 7.51+)"
    )


def test_without_the_cgroups_mount_inode_clients_are_untagged(
    clients: tuple[Path, dict[str, Client]], tmp_path: Path
) -> None:
    directory, started = clients
    empty = tmp_path / "cgroup"
    empty.mkdir()
    with receiver(directory, cgroup_root=str(empty)) as proc:
        heard = collect(proc)
    assert heard["dogstatsd", "b"]["client_container"] is None
    assert heard["dogstatsd", "a"]["client_container"] == started["a"].id
    result = _check({"HOST_PROC": "/proc", "DD_CONTAINER_CGROUP_ROOT": str(empty), **BOTH})
    assert _mechanism(result, "client_inode") == "failed"
    assert result["details"]["mechanisms"]["client_inode"]["reason"] == "inode_unresolved"
    assert "cgroups volume" in str(result["details"]["mechanisms"]["client_inode"]["says"])
    assert result["status"] == "failed"
