"""selfcheck inside real containers shaped like today's nodes, run by a real dockerd and a real
containerd: private cgroup namespaces, a cgroup v2 host tree, the kubelet's cgroup layouts,
hostPID without the procdir mount. Each test asserts what ``selfcheck check --json`` (or the
readiness probe) tells the user from inside that container.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.containers import (
    busybox_rootfs,
    ctr_python_args,
    docker_python_args,
    selfcheck_argv,
)
from tests.support.daemons import ContainerdDaemon, DockerDaemon, short_dir
from tests.support.standins import AgentHTTPStandIn, DogStatsDReceiver

pytestmark = pytest.mark.root
HOST_TREE = ["-v", "/proc:/host/proc:ro", "-v", "/sys/fs/cgroup:/host/sys/fs/cgroup:ro"]
UNIFIED = Path("/sys/fs/cgroup/unified")
POD_ENV = ["-e", "KUBERNETES_SERVICE_HOST=10.96.0.1"]  # what the kubelet gives every pod


def _checks(stdout: str) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in json.loads(stdout)["checks"]}


class Docker:
    """Containers run to completion; their ID is what the host tree must show."""

    def __init__(self, daemon: DockerDaemon, image: str) -> None:
        self.daemon, self.image = daemon, image

    def run(self, *args: str, command: list[str]) -> tuple[str, int, str, str]:
        network = [] if "--network" in args else ["--network", "none"]
        created = self.daemon.cli(
            "create", *network, *docker_python_args(), *args, self.image, *command
        )
        cid = created.stdout.strip()
        try:
            self.daemon.cli("start", cid)
            code = int(self.daemon.cli("wait", cid, timeout=90).stdout.strip())
            logs = self.daemon.cli("logs", cid)
            return cid, code, logs.stdout, logs.stderr
        finally:
            self.daemon.cli("rm", "-f", cid, check=False)


@pytest.fixture
def docker(dockerd_daemon: DockerDaemon, busybox_image: str) -> Docker:
    return Docker(dockerd_daemon, busybox_image)


CGROUP_CHECK = selfcheck_argv("check", "--only", "cgroups,procfs", "--json")


@pytest.mark.docker
@pytest.mark.parametrize("cgroupns", ["private", "host"])
def test_docker_container_finds_its_own_cgroup(docker: Docker, cgroupns: str) -> None:
    cid, code, out, err = docker.run(
        "--cgroupns", cgroupns, *HOST_TREE, *POD_ENV, command=CGROUP_CHECK
    )
    checks = _checks(out)
    cgroups = checks["cgroups"]
    assert (cgroups["status"], cgroups["reason"]) == ("ok", "ok"), (out, err)
    details = cgroups["details"]
    assert details["own_cgroup"] == f"/docker/{cid}"
    assert details["cgroup_namespace"] == cgroupns
    expected = "the inode of /sys/fs/cgroup/memory" if cgroupns == "private" else "path"
    assert details["found_by"] == expected
    assert details["container_cgroups"] >= 1
    assert code == 0


@pytest.mark.docker
def test_private_cgroup_namespace_is_ready(docker: Docker) -> None:
    """The sidecar's readiness in a private cgroup namespace: /readyz answers 200."""
    script = (
        f"{' '.join(selfcheck_argv('serve'))} & "
        "for i in $(seq 50); do "
        f"{' '.join(selfcheck_argv('probe', 'ready'))} && exit 0; sleep 0.2; done; exit 1"
    )
    _, code, out, err = docker.run(
        "--cgroupns",
        "private",
        *HOST_TREE,
        *POD_ENV,
        "-v",
        "/etc/passwd:/etc/passwd:ro",
        "-e",
        "SELFCHECK_LISTEN=127.0.0.1:9750",
        "-e",
        "SELFCHECK_SKIP=runtime_socket,dogstatsd_socket,dogstatsd_udp,security",
        command=["/bin/sh", "-c", script],
    )
    assert code == 0, (out, err[-2000:])
    assert "[+]cgroups ok" in out


@pytest.mark.docker
@pytest.mark.skipif(not UNIFIED.is_dir(), reason="no unified hierarchy on this machine")
@pytest.mark.parametrize("cgroupns", ["private", "host"])
def test_cgroup_v2_host_tree(docker: Docker, cgroupns: str) -> None:
    """The unified hierarchy bound as the node's tree: what the Agent sees on cgroup v2."""
    tree = ["-v", "/proc:/host/proc:ro", "-v", f"{UNIFIED}:/host/sys/fs/cgroup:ro"]
    cid, _, out, err = docker.run("--cgroupns", cgroupns, *tree, *POD_ENV, command=CGROUP_CHECK)
    cgroups = _checks(out)["cgroups"]
    assert (cgroups["status"], cgroups["details"]["layout"]) == ("ok", "v2"), (out, err)
    assert cgroups["details"]["own_cgroup"] == f"/docker/{cid}"
    assert cgroups["details"]["container_cgroups"] >= 1
    if cgroupns == "private":
        # runc mounts no cgroup2 of its own on a v1 host: found by membership, not by path.
        assert cgroups["details"]["found_by"] in (
            "the inode of /sys/fs/cgroup/unified",
            "its cgroup.procs",
        )


@pytest.mark.docker
def test_host_pid_without_the_procdir_mount(docker: Docker) -> None:
    """The Agent's best-known silent failure: hostPID, no /host/proc. Never the container's
    own /proc in its place; the missing mounts are named."""
    _, code, out, err = docker.run(
        "--pid",
        "host",
        "-v",
        "/sys/fs/cgroup:/host/sys/fs/cgroup:ro",
        *POD_ENV,
        # enabled (so judged, not skipped) but not required: the inode path needs /host/proc
        "-e",
        "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT=true",
        command=selfcheck_argv("check", "--only", "procfs,origin_detection,os_release", "--json"),
    )
    checks = _checks(out)
    procfs = checks["procfs"]
    assert (procfs["status"], procfs["reason"]) == ("degraded", "enoent"), (out, err)
    assert "/host/proc" in procfs["message"] and "procdir" in procfs["message"]
    assert "origin detection is off" in procfs["message"]
    origin = checks["origin_detection"]
    assert (origin["status"], origin["reason"]) == ("failed", "procfs_missing")
    assert "procdir" in origin["remediation"]
    os_release = checks["os_release"]
    assert (os_release["status"], os_release["reason"]) == ("failed", "enoent")
    assert "/host/etc/os-release" in os_release["message"]
    assert "os-release-file" in os_release["remediation"]
    assert code == 1  # nothing required failed: procfs degraded, the others optional


@pytest.mark.docker
def test_no_host_pid_and_no_procdir_fails(docker: Docker) -> None:
    _, code, out, _ = docker.run(
        *POD_ENV, command=selfcheck_argv("check", "--only", "procfs", "--json")
    )
    procfs = _checks(out)["procfs"]
    assert (procfs["status"], procfs["reason"]) == ("failed", "enoent")
    assert "only the pod's processes" in procfs["message"]
    assert code == 2


# --- containerd, in the kubelet's cgroup layouts ----------------------------------------------

LAYOUTS = {
    "cgroupfs": "/kubepods/besteffort/pod{uid}/{id}",
    "systemd": (
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/"
        "cri-containerd-{id}.scope"
    ),
    "crio": (
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/"
        "crio-{id}.scope"
    ),
}


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture
def pod_containers(containerd_daemon: ContainerdDaemon) -> Iterator[list[str]]:
    """IDs of containers started by the test, removed afterwards."""
    started: list[str] = []
    yield started
    for cid in started:
        containerd_daemon.ctr("-n", "k8s.io", "task", "kill", "-s", "KILL", cid, check=False)
        containerd_daemon.ctr("-n", "k8s.io", "task", "delete", "-f", cid, check=False)
        containerd_daemon.ctr("-n", "k8s.io", "container", "delete", cid, check=False)


def _ctr_run(
    containerd: ContainerdDaemon,
    rootfs: Path,
    cid: str,
    cgroup: str,
    command: list[str],
    detach: bool = False,
) -> subprocess.CompletedProcess[str]:
    socket_dir = containerd.socket.parent
    args = [
        "-n", "k8s.io", "run", "--net-host", "--rootfs",
        "--with-ns", f"pid:/proc/{Path('/proc/self').resolve().name}/ns/pid",
        "--cgroup", cgroup,
        "--mount", "type=bind,src=/proc,dst=/host/proc,options=rbind:ro",
        "--mount", "type=bind,src=/sys/fs/cgroup,dst=/host/sys/fs/cgroup,options=rbind:ro",
        "--mount", f"type=bind,src={socket_dir},dst=/host/var/run/containerd,options=rbind:ro",
        "--env", f"DD_CRI_SOCKET_PATH=/host/var/run/containerd/{containerd.socket.name}",
        "--env", "KUBERNETES_SERVICE_HOST=10.96.0.1",
        "--env", "DD_DOGSTATSD_ORIGIN_DETECTION=true",  # used, so judged (off: skipped)
        "--env", "DD_DOGSTATSD_SOCKET=/var/run/datadog/dsd.socket",  # the chart's: UDS on
        *ctr_python_args(),
    ]  # fmt: skip
    if detach:
        args.append("-d")
    return containerd.ctr(*args, str(rootfs), cid, *command, check=False, timeout=90)


@pytest.mark.containerd
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_containerd_pods_in_the_kubelets_layouts(
    containerd_daemon: ContainerdDaemon, rootfs: Path, pod_containers: list[str], layout: str
) -> None:
    """hostPID containers in one layout: selfcheck resolves its own container ID, sees the
    other pod's container resolve too, and reaches the CRI socket via DD_CRI_SOCKET_PATH."""
    uid = str(uuid.uuid4())
    ids = [secrets.token_hex(32), secrets.token_hex(32)]
    path = LAYOUTS[layout]
    cgroups = [path.format(uid=uid, uid_=uid.replace("-", "_"), id=cid) for cid in ids]
    pod_containers.extend(ids)
    sleeper = _ctr_run(containerd_daemon, rootfs, ids[1], cgroups[1], ["/bin/sleep", "60"], True)
    assert sleeper.returncode == 0, sleeper.stderr
    only = "cgroups,origin_detection,runtime_socket"
    ran = _ctr_run(
        containerd_daemon,
        rootfs,
        ids[0],
        cgroups[0],
        selfcheck_argv("check", "--only", only, "--json"),
    )
    checks = _checks(ran.stdout)
    assert checks["cgroups"]["status"] == "ok", ran.stdout
    assert checks["cgroups"]["details"]["own_cgroup"] == cgroups[0]
    origin = checks["origin_detection"]
    assert origin["status"] == "ok", json.dumps(origin)
    assert origin["details"]["container_id"] == ids[0]
    assert origin["details"]["resolved_processes"] >= 1  # the other container's sleep
    runtime = checks["runtime_socket"]
    assert (runtime["status"], runtime["details"]["runtime"]) == ("ok", "containerd"), runtime
    assert runtime["details"]["source"] == "DD_CRI_SOCKET_PATH"


@pytest.mark.docker
def test_a_default_install_on_a_healthy_node_exits_0(
    docker: Docker, dockerd_daemon: DockerDaemon
) -> None:
    """The chart's agent container as docker can make it: root, the runtime's default
    capabilities, no seccomp profile, privilege escalation allowed, a read-only root, hostPID
    and the chart's mount table; the Agent's sockets are stand-ins (no Agent binary can be
    had here). Nothing is lost, so nothing may be worse than ok (exit 0), except on a cgroup v1
    node, where the read-only cgroups mount leaves every controller writable: security is
    degraded naming them and recursiveReadOnly (exit 1)."""
    dsd = short_dir("dsd")
    with DogStatsDReceiver(dsd / "dsd.socket"), AgentHTTPStandIn() as agent:
        _, code, out, err = docker.run(
            "--network", "host", "--pid", "host", "--read-only",
            "--security-opt", "seccomp=unconfined",
            *HOST_TREE,
            "-v", "/etc/os-release:/host/etc/os-release:ro",
            "-v", "/etc/passwd:/etc/passwd:ro",
            "-v", f"{dockerd_daemon.socket.parent}:/host/var/run:ro",
            "-v", f"{dsd}:/var/run/datadog",
            *POD_ENV,
            "-e", f"DOCKER_HOST=unix:///host/var/run/{dockerd_daemon.socket.name}",
            "-e", "DD_DOGSTATSD_SOCKET=/var/run/datadog/dsd.socket",
            "-e", f"DD_HEALTH_PORT={agent.port}",
            "-e", f"DD_EXPVAR_PORT={agent.port}",
            command=selfcheck_argv("check", "--json"),
        )  # fmt: skip
    checks = _checks(out)
    worse = {
        c: (r["status"], r["reason"])
        for c, r in checks.items()
        if r["status"] not in ("ok", "skipped")
    }
    v1 = any(p.is_dir() and os.path.ismount(p) for p in Path("/sys/fs/cgroup").iterdir())
    assert worse == ({"security": ("degraded", "findings")} if v1 else {}), (worse, err[-2000:])
    findings = {f["id"]: f for f in checks["security"].get("findings", [])}
    assert "no_seccomp" in findings and "privilege_escalation_allowed" in findings
    if v1:
        writable = findings["cgroups_submounts_writable"]
        assert writable["severity"] == "warning" and "/host/sys/fs/cgroup/" in writable["message"]
        assert "recursiveReadOnly: IfPossible" in writable["remediation"]
    assert code == (1 if v1 else 0)
