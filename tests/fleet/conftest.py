"""A small live fleet: real ``selfcheck serve`` nodes scraped by a real ``prometheus``.

Each node is a real sidecar process on a loopback port, with a real fault or none:

- ``node-a``: healthy: a real containerd for the runtime socket, a DogStatsD listener
  playing the Agent's (``tests/support/standins.py``: no Agent binary can run here), origin
  detection required and working (this machine's PID namespace).
- ``node-b``: ``DD_DOGSTATSD_SOCKET`` names a socket that does not exist.
- ``node-c``: ``HOST_PROC`` names a directory that does not exist.
- ``node-d``: runs in its own PID namespace with its own procfs (``unshare --pid --fork
  --mount-proc``), a procfs that is not the node's.
- ``node-e``: healthy, with the least-privilege audit on: as root with every capability it
  finds ptrace next to the host PID namespace and SYS_ADMIN (critical findings).
- ``node-f``: a target nobody listens on: ``up == 0``, a missing node.

The other nodes skip ``security`` and every node skips the checks of the Agent itself
(``agent_health`` and, where this version has it, ``agent_container``): no Agent runs here.
Prometheus scrapes them every second with the PodMonitor's own relabelling
(``k8s/monitoring/podmonitor.yaml``, translated to ``relabel_configs``) applied to the
``__meta_kubernetes_*`` labels Kubernetes service discovery would give each pod, plus the
labels the Prometheus Operator adds (``namespace``, ``pod``, ``container``) and a
``cluster`` label standing in for the external label a global view (Thanos, Mimir) adds.
It loads the PrometheusRule's groups with every ``for:`` shortened to 2 s, in the test's
copy only, and serves its API over TLS (a certificate made here) with basic auth (a bcrypt
hash made with the system's ``crypt``), as a Prometheus reached from a laptop would be.
The fleet is shared by the package's modules and stopped after the last.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from selfcheck.registry import known_ids
from tests.support.daemons import short_dir
from tests.support.run import REPO, base_env
from tests.support.standins import DogStatsDReceiver

FOR = "2s"
USER = "ops"
# Checks of the Agent itself (its health port, its container's processes): no Agent binary
# can run here. Only the ids this version has, since an unknown id in SELFCHECK_SKIP is exit 3.
NO_AGENT = {"agent_health", "agent_container"} & known_ids()
STARTUP_TIMEOUT = 20.0
CLUSTER = "kind-test"
NODE_LABEL_PREFIX = "__meta_kubernetes_"


@dataclass
class Node:
    name: str
    nodepool: str
    env: dict[str, str] = field(default_factory=dict)
    prefix: Sequence[str] = ()
    listening: bool = True
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def pod(self) -> str:
        return f"datadog-{self.name[-1]}x{self.port % 1000:03d}"

    def log_tail(self) -> str:
        if self.log is None:
            return ""
        return self.log.read_text(errors="replace")[-3000:]


@dataclass
class LiveFleet:
    url: str
    nodes: dict[str, Node]
    directory: Path
    prometheus: subprocess.Popen[bytes]
    password: str
    ca: Path

    @property
    def auth_url(self) -> str:
        """The URL with the credentials in it, as ``selfcheck fleet --prometheus`` takes it."""
        return self.url.replace("https://", f"https://{USER}:{self.password}@")

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(f"{self.url}{path}{query}")
        token = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def log(self) -> str:
        return (self.directory / "prometheus.log").read_text(errors="replace")[-3000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, probe: Callable[[], Any], timeout: float, diag: Callable[[], str]) -> Any:
    """Poll ``probe`` until it returns a true value, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError, AssertionError):
            last = probe()
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {timeout:g} s (last: {last!r})\n{diag()}")


def podmonitor_relabelings() -> list[dict[str, Any]]:
    """The PodMonitor's relabelings in Prometheus's own spelling (snake_case keys)."""
    doc = yaml.safe_load((REPO / "k8s/monitoring/podmonitor.yaml").read_text())
    (endpoint,) = doc["spec"]["podMetricsEndpoints"]
    spelled = {
        "sourceLabels": "source_labels",
        "targetLabel": "target_label",
        "action": "action",
        "regex": "regex",
        "replacement": "replacement",
        "separator": "separator",
    }
    return [{spelled[k]: v for k, v in rule.items()} for rule in endpoint["relabelings"]]


# What the Prometheus Operator itself adds for every PodMonitor target, before the
# PodMonitor's own relabelings.
OPERATOR_RELABELINGS = [
    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
]


def shortened_rules(directory: Path) -> Path:
    """The PrometheusRule's groups, with ``for:`` shortened: the test's copy only."""
    doc = yaml.safe_load((REPO / "k8s/monitoring/prometheusrule.yaml").read_text())
    groups = doc["spec"]["groups"]
    for group in groups:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = FOR
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def web_config(directory: Path, password: str) -> Path:
    """TLS with a certificate for 127.0.0.1 and one basic-auth user (Prometheus web config)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # the system's crypt(3): bcrypt, which Prometheus's web config wants

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    config = {
        "tls_server_config": {
            "cert_file": str(directory / "cert.pem"),
            "key_file": str(directory / "key.pem"),
        },
        "basic_auth_users": {USER: hashed},
    }
    path = directory / "web.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def prometheus_config(nodes: Sequence[Node], rules: Path) -> dict[str, Any]:
    targets = [
        {
            "targets": [f"127.0.0.1:{node.port}"],
            "labels": {
                "__meta_kubernetes_namespace": "datadog",
                "__meta_kubernetes_pod_name": node.pod,
                "__meta_kubernetes_pod_container_name": "selfcheck",
                "__meta_kubernetes_pod_node_name": node.name,
                "__meta_kubernetes_node_label_cloud_google_com_gke_nodepool": node.nodepool,
                "cluster": CLUSTER,
            },
        }
        for node in nodes
    ]
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "datadog/selfcheck",
                "metrics_path": "/metrics",
                "static_configs": targets,
                "relabel_configs": OPERATOR_RELABELINGS + podmonitor_relabelings(),
            }
        ],
    }


def the_nodes(work: Path, containerd: Path, dogstatsd: Path) -> list[Node]:
    common = {
        "DD_CRI_SOCKET_PATH": str(containerd),
        "DD_DOGSTATSD_SOCKET": str(dogstatsd),
        "DD_DOGSTATSD_ORIGIN_DETECTION": "true",
        "HOST_PROC": "/proc",
        "DD_CONTAINER_CGROUP_ROOT": "/sys/fs/cgroup",
        "SELFCHECK_INTERVAL": "1",
        "SELFCHECK_SKIP": ",".join(NO_AGENT | {"security"}),
    }
    return [
        Node("node-a", "default", dict(common)),
        Node("node-b", "default", {**common, "DD_DOGSTATSD_SOCKET": str(work / "absent.sock")}),
        Node("node-c", "default", {**common, "HOST_PROC": str(work / "no-proc")}),
        Node(
            "node-d",
            "gpu",
            dict(common),
            prefix=("unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM"),
        ),
        # audited as the container it stands for (outside one, security is skipped), the
        # machine's /etc as the host's; origin detection, which in a container wants /host/proc
        # itself, is left to the other nodes
        Node(
            "node-e",
            "gpu",
            {
                **common,
                "SELFCHECK_SKIP": ",".join(NO_AGENT | {"origin_detection"}),
                "SELFCHECK_CONTAINERIZED": "true",
                "HOST_ETC": "/etc",
            },
        ),
        Node("node-f", "gpu", listening=False),
    ]


def start_node(node: Node, work: Path) -> None:
    node.port = free_port()
    if not node.listening:
        return
    node.log = work / f"{node.name}.log"
    env = base_env({**node.env, "SELFCHECK_LISTEN": f"127.0.0.1:{node.port}"})
    with node.log.open("wb") as log:
        node.proc = subprocess.Popen(
            [*node.prefix, sys.executable, "-m", "selfcheck", "serve"],
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the process group we started, a bounded wait, then SIGKILL."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def startup_answers(node: Node) -> bool:
    url = f"http://127.0.0.1:{node.port}/startupz"
    assert node.proc is not None and node.proc.poll() is None, node.log_tail()
    with urllib.request.urlopen(url, timeout=1) as response:
        return int(response.status) == 200


def status_of(node: Node) -> Mapping[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.port}/status", timeout=5) as response:
        return dict(json.load(response))


@pytest.fixture(scope="package")
def live_fleet(containerd_socket: Path) -> Iterator[LiveFleet]:
    if shutil.which("prometheus") is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (.ci/run installs it)", pytrace=False)
        pytest.skip("prometheus is not installed")
    if os.geteuid() != 0:
        pytest.skip("needs root (unshare, containerd)")
    work = Path(tempfile.mkdtemp(prefix="sc-fleet-", dir="/tmp"))
    sockets = short_dir("fleet")
    nodes = the_nodes(work, containerd_socket, sockets / "dsd.socket")
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        with DogStatsDReceiver(sockets / "dsd.socket"):
            for node in nodes:
                start_node(node, work)
            for node in nodes:
                if node.listening:
                    wait_until(
                        f"{node.name} /startupz",
                        functools.partial(startup_answers, node),
                        20,
                        node.log_tail,
                    )
            config = work / "prometheus.yml"
            config.write_text(yaml.safe_dump(prometheus_config(nodes, shortened_rules(work))))
            port = free_port()
            password = secrets.token_urlsafe(12)
            web = web_config(work, password)
            with (work / "prometheus.log").open("wb") as log:
                prometheus = subprocess.Popen(
                    [
                        "prometheus",
                        f"--config.file={config}",
                        f"--storage.tsdb.path={work / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        f"--web.config.file={web}",
                    ],
                    cwd=work,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            fleet = LiveFleet(
                f"https://127.0.0.1:{port}",
                {n.name: n for n in nodes},
                work,
                prometheus,
                password,
                work / "cert.pem",
            )
            wait_until(
                "every node scraped",
                lambda: (
                    len(fleet.query("up")) == len(nodes)
                    and len(fleet.query("selfcheck_ready")) == len(nodes) - 1
                ),
                STARTUP_TIMEOUT,
                fleet.log,
            )
            yield fleet
    finally:
        stop(prometheus)
        for node in nodes:
            stop(node.proc)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sockets, ignore_errors=True)
