"""The image, built from the Dockerfile, run with the rendered manifest's own settings.

A Debian bookworm base with python3 is debootstrapped (cached under /var/cache/selfcheck-test)
and imported as the stand-in for the Dockerfile's public base (.ci/base-image.sh); the image is
built from the repository's own Dockerfile against it. The selfcheck container's spec is read
from ``kubectl kustomize k8s/`` and turned into ``docker run`` flags (tests/deploy/podspec.py)
against this machine's real /proc, cgroupfs, /etc/os-release and /etc/passwd. The host's
/var/run is the one place stood in for: it is the session dockerd's directory, which holds that
dockerd's real socket (``runtime_socket``) and the DogStatsD and APM stand-ins that play the
Agent's sockets (tests/support/standins.py); the Agent's DogStatsD UDP port is a listener in
the pod's network namespace, which the sidecar joins. Probes are sent the way the kubelet sends
them: to the probe's path and port, inside the container's network namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.podspec import (
    HostPaths,
    Obj,
    container,
    container_args,
    container_port,
    docker_run_args,
    env_values,
    host_side,
    one,
    pod_spec,
    without_host_pid,
)
from tests.deploy.tools import REPO, missing, run
from tests.lint.faults import FAULTS, RUNTIME_FAULTS, Fault, assert_lint, lint_spec
from tests.support.daemons import DockerDaemon, short_dir
from tests.support.standins import DogStatsDReceiver, TraceAgentStandIn

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BASE_IMAGE = "local/bookworm-python:latest"
IMAGE = "local/selfcheck:test"
SIDECAR = "selfcheck"
BUILD_TIMEOUT = 900.0

_GET = """
import http.client, sys
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
connection.request("GET", sys.argv[2])
response = connection.getresponse()
sys.stdout.write(f"{response.status}\\n" + response.read().decode("utf-8", "replace"))
"""


@dataclass(frozen=True, slots=True)
class Docker:
    """The docker client on the session's dockerd, with the legacy builder (no buildx here)."""

    daemon: DockerDaemon

    @property
    def env(self) -> dict[str, str]:
        return {
            "DOCKER_HOST": self.daemon.host,
            "DOCKER_BUILDKIT": "0",
            "DOCKER_CONFIG": str(self.daemon.directory / "cli"),
        }

    def __call__(
        self, *args: str, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"docker {' '.join(args[:3])} ... exited {result.returncode}:\n{result.stderr}",
                pytrace=False,
            )
        return result


@pytest.fixture(scope="session")
def docker(request: pytest.FixtureRequest) -> Docker:
    for binary in ("dockerd", "docker"):
        if shutil.which(binary) is None:
            missing(f"{binary} is not installed (Debian package docker.io)")
    daemon: DockerDaemon = request.getfixturevalue("dockerd_daemon")
    return Docker(daemon)


@pytest.fixture(scope="session")
def image(docker: Docker) -> str:
    """The image built from the repository's Dockerfile on the debootstrapped local base."""
    if shutil.which("debootstrap") is None:
        missing("debootstrap is not installed (Debian package debootstrap)")
    run([str(REPO / ".ci" / "base-image.sh"), BASE_IMAGE], env=docker.env, timeout=BUILD_TIMEOUT)
    docker(
        "build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}",
        "--tag", IMAGE, str(REPO),
        timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    return IMAGE


@pytest.fixture(scope="session")
def spec(base_docs: list[Obj]) -> Obj:
    return pod_spec(one(base_docs, "DaemonSet"))


@pytest.fixture(scope="session")
def hosts(docker: Docker) -> Iterator[HostPaths]:
    """A directory plays the host's /var/run; every other host path is the machine's own.

    It holds a hard link to the session dockerd's socket (a link reaches the same listening
    socket), because dockerd refuses private bind mounts of its own directory, which holds
    its data root: on a real node /var/run and /var/lib/docker are apart, too.
    """
    var_run = short_dir("varrun")
    os.link(docker.daemon.socket, var_run / "docker.sock")
    try:
        yield HostPaths({"/var/run": var_run})
    finally:
        shutil.rmtree(var_run, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class Running:
    """A container started from the spec, and how the kubelet would reach its probes."""

    id: str
    pid: int
    spec: Obj

    def get(self, path: str, port: int | str | None = None) -> tuple[int, str]:
        """GET inside the container's network namespace, as the kubelet's probe does."""
        number = container_port(self.spec, SIDECAR, port if port is not None else SIDECAR)
        result = subprocess.run(
            ["nsenter", "--target", str(self.pid), "--net", "--",
             sys.executable, "-c", _GET, str(number), path],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ConnectionError(result.stderr.strip().splitlines()[-1:])
        status, _, body = result.stdout.partition("\n")
        return int(status), body

    def probe(self, kind: str) -> tuple[int, str]:
        get = container(self.spec, SIDECAR)[kind]["httpGet"]
        return self.get(get["path"], get["port"])

    def wait_probe(self, kind: str, want: int) -> tuple[int, str]:
        """Probe until it answers ``want`` or the kubelet would give up (period x threshold)."""
        settings = container(self.spec, SIDECAR)[kind]
        budget = settings.get("periodSeconds", 10) * settings.get("failureThreshold", 3)
        deadline = time.monotonic() + budget
        answer: tuple[int, str] = (0, "no answer")
        while time.monotonic() < deadline:
            with contextlib.suppress(ConnectionError):
                answer = self.probe(kind)
                if answer[0] == want:
                    return answer
            time.sleep(0.2)
        return answer


UDP_AGENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    s.recv(65536)
"""


@contextlib.contextmanager
def pod_network(docker: Docker, image: str, spec: Obj) -> Iterator[str]:
    """The pod's network namespace with the Agent's DogStatsD UDP port in it, which the
    manifest offers applications (DD_DOGSTATSD_NON_LOCAL_TRAFFIC): a container of the image
    listening on the spec's DD_DOGSTATSD_PORT, whose network the sidecar joins as a pod's
    containers share one (``--network container:``)."""
    port = env_values(spec, SIDECAR).get("DD_DOGSTATSD_PORT", "8125")
    cid = docker(
        "run", "--detach", "--network", "none", "--entrypoint", "python3", image,
        "-c", UDP_AGENT, port,
    ).stdout.strip()  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "ready" not in docker("logs", cid, check=False).stdout:
            assert time.monotonic() < deadline, "the Agent's UDP stand-in did not start"
            time.sleep(0.05)
        yield f"container:{cid}"
    finally:
        docker("rm", "--force", cid, check=False)


@contextlib.contextmanager
def started(docker: Docker, image: str, spec: Obj, hosts: HostPaths) -> Iterator[Running]:
    args = docker_run_args(spec, SIDECAR, hosts)
    with contextlib.ExitStack() as stack:
        if args[:2] == ["--network", "none"]:
            args[1] = stack.enter_context(pod_network(docker, image, spec))
        with _sidecar(docker, image, spec, args) as pod:
            yield pod


@contextlib.contextmanager
def _sidecar(docker: Docker, image: str, spec: Obj, args: list[str]) -> Iterator[Running]:
    cid = docker("run", "--detach", *args, image, *container_args(spec, SIDECAR)).stdout.strip()
    try:
        pid = int(docker("inspect", "--format", "{{.State.Pid}}", cid).stdout)
        yield Running(cid, pid, spec)
    finally:
        logs = docker("logs", "--tail", "20", cid, check=False)
        print(f"--- {cid[:12]} logs\n{logs.stdout}{logs.stderr}")
        docker("rm", "--force", cid, check=False)


@contextlib.contextmanager
def agent_sockets(spec: Obj, hosts: HostPaths) -> Iterator[DogStatsDReceiver]:
    """The Agent's DogStatsD and APM sockets, where the spec's env and mounts put them."""
    env = env_values(spec, SIDECAR)
    dsd = host_side(spec, SIDECAR, env["DD_DOGSTATSD_SOCKET"], hosts)
    apm = host_side(spec, SIDECAR, env["DD_APM_RECEIVER_SOCKET"], hosts)
    dsd.parent.mkdir(parents=True, exist_ok=True)
    apm.parent.mkdir(parents=True, exist_ok=True)
    with DogStatsDReceiver(dsd) as receiver, TraceAgentStandIn(apm):
        yield receiver


def _metrics(text: str) -> dict[str, list[str]]:
    """Sample lines of the exposition by metric name."""
    samples: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            samples.setdefault(re.split(r"[{ ]", line, maxsplit=1)[0], []).append(line)
    return samples


def _rule_metrics(base_docs: list[Obj]) -> set[str]:
    groups: list[dict[str, Any]] = one(base_docs, "PrometheusRule")["spec"]["groups"]
    exprs = " ".join(rule["expr"] for group in groups for rule in group["rules"])
    return set(re.findall(r"\bselfcheck_[a-z_]+", exprs))


def test_image_metadata(docker: Docker, image: str) -> None:
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["Entrypoint"] == ["selfcheck"]
    assert config["Cmd"] == ["serve"]
    assert config["Healthcheck"]["Test"] == ["CMD", "selfcheck", "probe", "live"]
    assert config["User"] == "100:0"
    assert "9750/tcp" in config["ExposedPorts"]


def test_build_context_holds_only_what_pip_install_needs(
    docker: Docker, image: str, tmp_path: Path
) -> None:
    """What ``docker build`` sends with ``.dockerignore`` applied, as a build stage sees it."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {BASE_IMAGE}\nCOPY . /context\n")
    tag = "local/selfcheck-context:test"
    docker("build", "--quiet", "--file", str(dockerfile), "--tag", tag, str(REPO))
    try:
        out = docker("run", "--rm", "--network", "none", tag, "find", "/context", "-type", "f")
    finally:
        docker("image", "rm", "--force", tag, check=False)
    files = {line.removeprefix("/context/") for line in out.stdout.split()}
    assert {name.split("/")[0] for name in files} == {"pyproject.toml", "README.md", "selfcheck"}
    assert "selfcheck/cli.py" in files
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]


def test_final_stage_has_no_build_tools(docker: Docker, image: str) -> None:
    script = (
        "import importlib.util, json, os, shutil; print(json.dumps({"
        "'modules': [m for m in ('pip', 'setuptools', 'wheel') if importlib.util.find_spec(m)],"
        "'tools': [t for t in ('gcc', 'cc', 'make', 'pip', 'pip3') if shutil.which(t)],"
        "'caches': [p for p in ('/root/.cache',) if os.path.exists(p)],"
        "'bytecode': os.path.exists(importlib.util.cache_from_source("
        "    importlib.util.find_spec('selfcheck.cli').origin))}))"
    )
    out = docker(
        "run", "--rm", "--network", "none", "--user", "0",
        "--entrypoint", "/opt/selfcheck/bin/python3", image, "-c", script,
    ).stdout  # fmt: skip
    # Bytecode compiled at build time: a read-only root file system cannot take it later.
    assert json.loads(out) == {"modules": [], "tools": [], "caches": [], "bytecode": True}


def test_healthcheck_passes_read_only_as_any_user(docker: Docker, image: str) -> None:
    """The image's own HEALTHCHECK (``selfcheck probe live``), any UID, read-only root."""
    cid = docker(
        "run", "--detach", "--network", "none", "--read-only", "--user", "4242:4242",
        "--health-interval", "1s", "--health-start-period", "10s", image,
    ).stdout.strip()  # fmt: skip
    try:
        status = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and status != "healthy":
            time.sleep(0.5)
            status = docker("inspect", "--format", "{{.State.Health.Status}}", cid).stdout.strip()
        assert status == "healthy", docker("inspect", "--format", "{{json .State}}", cid).stdout
    finally:
        docker("rm", "--force", cid, check=False)


def test_ready_with_the_manifests_settings(
    docker: Docker, image: str, spec: Obj, hosts: HostPaths, base_docs: list[Obj]
) -> None:
    with agent_sockets(spec, hosts) as dogstatsd, started(docker, image, spec, hosts) as pod:
        status, body = pod.wait_probe("startupProbe", 200)
        assert status == 200, body
        status, body = pod.wait_probe("readinessProbe", 200)
        assert status == 200, pod.get("/readyz?verbose")[1]
        assert pod.probe("livenessProbe")[0] == 200

        verbose = pod.get("/readyz?verbose")[1]
        checks = (
            "origin_detection",
            "dogstatsd_socket",
            "dogstatsd_udp",
            "apm_socket",
            "runtime_socket",
        )
        for check in checks:
            assert f"[+]{check} ok" in verbose, verbose

        # What the Agent's listener would see: the sidecar's datagram carries the PID of a
        # process in this container, so the Agent can tag it by container.
        packets = dogstatsd.wait_for(1, timeout=5)
        assert packets, "no datagram reached the DogStatsD socket"
        assert packets[0].pid
        assert pod.id in Path(f"/proc/{packets[0].pid}/cgroup").read_text()

        # Every selfcheck metric the alerts and recording rules use is exported.
        status, text = pod.get("/metrics")
        assert status == 200
        samples = _metrics(text)
        assert _rule_metrics(base_docs) <= set(samples)
        assert (
            'selfcheck_check_status{check="origin_detection",status="ok"} 1.0'
            in samples["selfcheck_check_status"]
        )


def test_not_ready_without_host_pid_names_origin_detection(
    docker: Docker, image: str, spec: Obj, hosts: HostPaths
) -> None:
    fault = next(f for f in FAULTS if f.id == "host_pid_off")
    broken = fault.apply(spec)
    assert broken == without_host_pid(spec)
    for expect in fault.expect:  # the lint of this same spec predicts this same verdict
        assert_lint(lint_spec(broken), expect)
    with agent_sockets(broken, hosts), started(docker, image, broken, hosts) as pod:
        status, body = pod.wait_probe("startupProbe", 200)
        assert status == 200, body
        status, body = pod.probe("readinessProbe")
        assert status == 503
        assert "[-]origin_detection failed: not_host_pid" in body, body
        others = pod.get("/readyz?verbose")[1]
        assert "[+]dogstatsd_socket ok" in others, others

        samples = _metrics(pod.get("/metrics")[1])
        assert (
            'selfcheck_check_required{check="origin_detection"} 1.0'
            in samples["selfcheck_check_required"]
        )
        assert (
            'selfcheck_check_status{check="origin_detection",status="failed"} 1.0'
            in samples["selfcheck_check_status"]
        )


@pytest.mark.parametrize(
    "fault", [f for f in RUNTIME_FAULTS if f.id != "host_pid_off"], ids=lambda f: f.id
)
def test_runtime_verdict_is_the_lint_verdict(
    docker: Docker, image: str, spec: Obj, hosts: HostPaths, fault: Fault
) -> None:
    """The fault table's runtime cases: the sidecar run from the broken spec gives, in its
    ``/status``, the check, status, reason (and finding) that linting that spec gives."""
    broken = fault.apply(spec)
    report = lint_spec(broken)
    # The Agent's sockets are where the unbroken spec puts them; the fault may hide them.
    with agent_sockets(spec, hosts), started(docker, image, broken, hosts) as pod:
        status, body = pod.wait_probe("startupProbe", 200)
        assert status == 200, body
        code, text = pod.get("/status")
        assert code == 200
        verdicts = {c["check"]: c for c in json.loads(text)["checks"]}
    for expect in fault.expect:
        assert_lint(report, expect)
        if expect.lint_only:
            continue
        seen = verdicts[expect.check]
        assert (seen["status"], seen["reason"]) == (expect.status, expect.reason), seen
        if expect.finding:
            assert expect.finding in {f["id"] for f in seen.get("findings", [])}, seen
