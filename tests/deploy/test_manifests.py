"""The kustomize base, the sidecar component and the Helm post-renderer, rendered and checked.

Two renders are checked the same way: ``kubectl kustomize k8s/`` (the base) and the official
chart's render (fixtures/helm-datadog-render.yaml) passed through k8s/helm/post-renderer.sh.
Beyond the validators (kubernetes-validate, checkov), the tests prove that the manifests agree
with each other and with the code: the sidecar carries the agent container's host mounts,
identity and environment, its probes reach the endpoints the server serves, and the Agent's
environment makes selfcheck require the checks the README promises.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from selfcheck.config import DEFAULT_LISTEN, load, parse_listen
from selfcheck.registry import all_checks, required_ids
from tests.deploy.conftest import HELM_RENDER
from tests.deploy.podspec import (
    Obj,
    container,
    container_port,
    effective_security_context,
    env_values,
    host_mounts,
    load_all,
    one,
    pod_spec,
)
from tests.deploy.tools import K8S, REPO, run, tool

KUBERNETES_VERSIONS = ("1.35.0", "1.37.0")
RENDERS = ("base", "helm")

# The Agent's own variable names that selfcheck reads (README.md, Configuration).
AGENT_SETTINGS = (
    "HOST_PROC", "HOST_ETC", "DD_CONTAINER_CGROUP_ROOT", "DD_DOGSTATSD_SOCKET",
    "DD_APM_RECEIVER_SOCKET", "DOCKER_HOST", "DD_CRI_SOCKET_PATH",
    "DD_DOGSTATSD_ORIGIN_DETECTION", "DD_LOGS_ENABLED", "DD_HEALTH_PORT", "DD_EXPVAR_PORT",
    "DD_DOGSTATSD_PORT", "DD_DOGSTATSD_NON_LOCAL_TRAFFIC",
)  # fmt: skip

# Where the base's agent container differs from the chart's default render, on purpose: the
# base deploys no Cluster Agent (see the header of k8s/daemonset.yaml).
CLUSTER_AGENT_ONLY = {
    "DD_CLUSTER_AGENT_KUBERNETES_SERVICE_NAME", "DD_CLUSTER_AGENT_AUTH_TOKEN",
    "DD_EXTRA_CONFIG_PROVIDERS", "DD_IGNORE_AUTOCONF",
}  # fmt: skip
BASE_ONLY = {"DD_LEADER_ELECTION", "DD_COLLECT_KUBERNETES_EVENTS"}
# The pod annotation with which the Agent's OpenMetrics check scrapes the sidecar.
AUTODISCOVERY = "ad.datadoghq.com/selfcheck.checks"
VALUE_DIFFERS = {"DD_CLUSTER_AGENT_ENABLED", "DD_ORCHESTRATOR_EXPLORER_ENABLED"}


@pytest.fixture(params=RENDERS)
def render(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    name: str = request.param
    docs: list[Obj] = request.getfixturevalue(f"{name}_docs")
    return name, docs


@pytest.fixture
def spec(render: tuple[str, list[Obj]]) -> Obj:
    return pod_spec(one(render[1], "DaemonSet"))


def test_base_renders_every_resource(base_docs: list[Obj]) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in base_docs)
    assert kinds == [
        ("ClusterRole", "datadog-agent"),
        ("ClusterRoleBinding", "datadog-agent"),
        ("ConfigMap", "selfcheck-grafana-dashboard"),
        ("DaemonSet", "datadog"),
        ("Namespace", "datadog"),
        ("PodMonitor", "selfcheck"),
        ("PrometheusRule", "selfcheck"),
        ("ServiceAccount", "datadog-agent"),
    ]
    assert {d["metadata"].get("namespace") for d in base_docs if d["kind"] != "Namespace"} <= {
        "datadog",
        None,
    }


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("which", (*RENDERS, "node"))
def test_kubernetes_validate_strict(
    which: str, version: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    text: str = request.getfixturevalue(f"{which}_yaml")
    rendered = tmp_path / f"{which}.yaml"
    rendered.write_text(text)
    out = run([tool("kubernetes-validate"), "--strict", "-k", version, str(rendered)]).stdout
    passed = re.findall(r"passed for resource (\S+)", out)
    builtin = [d for d in load_all(text) if "monitoring.coreos.com" not in d["apiVersion"]]
    assert len(passed) == len(builtin), out
    assert any(p.startswith("daemonset/") for p in passed), out


@pytest.mark.parametrize("which", ["base", "node"])
def test_checkov_passes_and_every_skip_has_a_reason(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    base_yaml: str = request.getfixturevalue(f"{which}_yaml")
    (tmp_path / "rendered.yaml").write_text(base_yaml)
    result = run(
        [tool("checkov"), "--directory", str(tmp_path), "--framework", "kubernetes",
         "--output", "json", "--skip-download", "--quiet", "--compact"],
        env={"BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
        timeout=300,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["summary"]["failed"] == 0, result.stdout
    assert report["summary"]["passed"] > 50
    for doc in load_all(base_yaml):
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check), value
                assert len(reason.split()) >= 6, f"{key}: the reason must say why: {value}"


def test_namespace_is_privileged_for_pod_security(base_docs: list[Obj]) -> None:
    labels = one(base_docs, "Namespace")["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "privileged"


def test_rolling_update_one_node_at_a_time(render: tuple[str, list[Obj]]) -> None:
    strategy = one(render[1], "DaemonSet")["spec"]["updateStrategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}


def test_sidecar_follows_the_agent_containers(spec: Obj) -> None:
    names = [c["name"] for c in spec["containers"]]
    assert names[0] == "agent", "kubectl exec and logs default to the first container"
    assert names[-1] == "selfcheck"


def test_sidecar_mounts_what_the_agent_mounts(spec: Obj) -> None:
    assert host_mounts(spec, "selfcheck") == host_mounts(spec, "agent")
    volumes = {v["name"] for v in spec["volumes"]}
    assert {m["name"] for m in container(spec, "selfcheck")["volumeMounts"]} <= volumes


def test_sidecar_runs_as_the_agent(spec: Obj) -> None:
    fields = ("runAsUser", "runAsGroup", "supplementalGroups", "capabilities", "privileged")
    agent = effective_security_context(spec, "agent")
    sidecar = effective_security_context(spec, "selfcheck")
    assert {k: sidecar.get(k) for k in fields} == {k: agent.get(k) for k in fields}
    assert sidecar["readOnlyRootFilesystem"] is True
    assert sidecar["allowPrivilegeEscalation"] is False
    assert spec["hostPID"] is True


def test_sidecar_reads_the_agents_settings(spec: Obj) -> None:
    """Every Agent setting selfcheck reads has the agent container's value, and no other."""
    agent, sidecar = env_values(spec, "agent"), env_values(spec, "selfcheck")
    for name in AGENT_SETTINGS:
        assert sidecar.get(name) == agent.get(name), name
    assert agent["DD_DOGSTATSD_ORIGIN_DETECTION"] == "true"


def test_code_requires_what_the_manifest_promises(spec: Obj) -> None:
    """selfcheck, given the sidecar's environment as root, gates readiness on these checks."""
    checks = all_checks()
    config = load(frozenset(checks), env=env_values(spec, "selfcheck"), euid=lambda: 0)
    required = required_ids(config, checks)
    assert required >= {
        "procfs", "cgroups", "runtime_socket", "dogstatsd_socket", "dogstatsd_udp",
        "apm_socket", "origin_detection", "passwd",
    }  # fmt: skip
    assert "pod_logs" not in required
    assert "agent_health" not in required


def test_probes_reach_the_servers_endpoints(spec: Obj) -> None:
    sidecar = container(spec, "selfcheck")
    env = env_values(spec, "selfcheck")
    _, listen_port = parse_listen("SELFCHECK_LISTEN", env.get("SELFCHECK_LISTEN", DEFAULT_LISTEN))
    expected = {"startupProbe": "/startupz", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        get = sidecar[probe]["httpGet"]
        assert get["path"] == path
        assert container_port(spec, "selfcheck", get["port"]) == listen_port
    exposed = re.search(r"^EXPOSE (\d+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert exposed is not None and int(exposed.group(1)) == listen_port


def test_sidecar_resources_cover_its_footprint(spec: Obj) -> None:
    resources = container(spec, "selfcheck")["resources"]
    mib = {"Mi": 1, "Gi": 1024}

    def megabytes(quantity: str) -> int:
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
        return int(number) * mib[unit]

    # docs/performance.md: resident under 35 MB; the limit leaves room for a slow cycle's garbage.
    assert megabytes(resources["requests"]["memory"]) >= 35
    assert megabytes(resources["limits"]["memory"]) >= 2 * 35
    assert "cpu" in resources["requests"]
    assert "cpu" not in resources.get("limits", {}), "CPU limits throttle probe answers"


def test_podmonitor_scrapes_the_sidecar(
    render: tuple[str, list[Obj]], base_docs: list[Obj]
) -> None:
    monitor = one(base_docs, "PodMonitor")["spec"]
    template = one(render[1], "DaemonSet")["spec"]["template"]
    assert monitor["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert container_port(template["spec"], "selfcheck", endpoint["port"]) == 9750
    targets = {r.get("targetLabel") for r in endpoint["relabelings"]}
    assert "node" in targets, "every alert names the node"


def test_base_agent_is_the_charts_default_agent(base_docs: list[Obj]) -> None:
    """The base's agent container is the chart's render, except where its header says why."""
    chart = pod_spec(one(load_all(HELM_RENDER.read_text()), "DaemonSet"))
    base = pod_spec(one(base_docs, "DaemonSet"))
    assert host_mounts(base, "agent") == host_mounts(chart, "agent")
    assert base["securityContext"] == chart["securityContext"]
    assert base["hostPID"] == chart["hostPID"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container(base, "agent")[probe] == container(chart, "agent")[probe]
    ours, theirs = env_values(base, "agent"), env_values(chart, "agent")
    assert set(theirs) - set(ours) <= CLUSTER_AGENT_ONLY
    assert set(ours) - set(theirs) <= BASE_ONLY
    differing = {k for k in set(ours) & set(theirs) if ours[k] != theirs[k]}
    assert differing <= VALUE_DIFFERS


def _key(doc: Obj) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _recursive_read_only(original: Obj) -> Obj:
    """The chart's container as the post-renderer leaves it: its read-only cgroups mount
    with recursiveReadOnly: IfPossible, nothing else changed."""
    changed = copy.deepcopy(original)
    for mount in changed.get("volumeMounts", []):
        if mount["mountPath"] == CGROUPS_MOUNT and mount.get("readOnly"):
            mount["recursiveReadOnly"] = "IfPossible"
    return changed


CGROUPS_MOUNT = "/host/sys/fs/cgroup"


def _cgroups_mounts(spec: Obj) -> list[tuple[str, Obj]]:
    return [
        (c["name"], m)
        for c in spec["containers"] + spec.get("initContainers", [])
        for m in c.get("volumeMounts", [])
        if m["mountPath"] == CGROUPS_MOUNT
    ]


@pytest.mark.parametrize("name", ["base", "helm", "node"])
def test_every_read_only_cgroups_mount_is_recursively_read_only(
    request: pytest.FixtureRequest, name: str
) -> None:
    """On cgroup v1 the controllers are submounts that readOnly misses: every read-only
    cgroups mount (the Agent's, the trace-agent's, the sidecar's) carries recursiveReadOnly:
    IfPossible, which the API accepts only without mount propagation. Node mode mounts no
    cgroups of its own (it reads the Agent's root)."""
    if name == "node":
        spec = request.getfixturevalue("node_spec")
    else:
        spec = pod_spec(one(request.getfixturevalue(f"{name}_docs"), "DaemonSet"))
    mounts = _cgroups_mounts(spec)
    if name == "node":
        assert all(m.get("recursiveReadOnly") == "IfPossible" for _, m in mounts), mounts
        return
    assert {"agent", "selfcheck"} <= {c for c, _ in mounts}, mounts
    assert all(m.get("readOnly") for _, m in mounts), mounts
    for container_name, mount in mounts:
        assert mount.get("recursiveReadOnly") == "IfPossible", (container_name, mount)
        assert mount.get("mountPropagation", "None") == "None", (container_name, mount)


def test_post_renderer_changes_only_the_agent_daemonset(helm_docs: list[Obj]) -> None:
    before = load_all(HELM_RENDER.read_text())
    assert sorted(map(_key, helm_docs)) == sorted(map(_key, before))
    after = {_key(d): d for d in helm_docs}
    for doc in before:
        if doc["kind"] != "DaemonSet":
            assert after[_key(doc)] == doc
            continue
        changed = copy.deepcopy(after[_key(doc)])
        containers = changed["spec"]["template"]["spec"].pop("containers")
        original = doc["spec"]["template"]["spec"].pop("containers")
        assert containers[:-1] == [_recursive_read_only(c) for c in original]
        assert containers[-1]["name"] == "selfcheck"
        annotations = changed["spec"]["template"]["metadata"]["annotations"]
        assert json.loads(annotations.pop(AUTODISCOVERY))["openmetrics"]["instances"]
        assert changed == doc, "the chart's own pod annotations are kept"


REGISTRY = "registry.example.com:5000/team"
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (f"{REGISTRY}/selfcheck:1.2.3", f"{REGISTRY}/selfcheck:1.2.3"),
        (f"{REGISTRY}/selfcheck@{DIGEST}", f"{REGISTRY}/selfcheck@{DIGEST}"),
        (f"{REGISTRY}/selfcheck", f"{REGISTRY}/selfcheck:0.1.0"),
    ],
)
def test_post_renderer_sets_the_image(kubectl: str, reference: str, expected: str) -> None:
    out = run(
        [str(K8S / "helm" / "post-renderer.sh")],
        stdin=HELM_RENDER.read_text(),
        env={"KUBECTL": kubectl, "SELFCHECK_IMAGE": reference},
    ).stdout
    spec = pod_spec(one(load_all(out), "DaemonSet"))
    assert container(spec, "selfcheck")["image"] == expected


def test_helm_plugin_runs_the_post_renderer() -> None:
    plugin = yaml.safe_load((K8S / "helm" / "plugin.yaml").read_text())
    assert plugin["type"] == "postrenderer/v1"
    command = plugin["runtimeConfig"]["platformCommand"][0]["command"]
    script = K8S / "helm" / command.replace("${HELM_PLUGIN_DIR}/", "")
    assert script.is_file() and script.stat().st_mode & 0o111


def test_helm_values_agree_with_the_component(helm_docs: list[Obj]) -> None:
    values: dict[str, Any] = yaml.safe_load((K8S / "helm" / "values.yaml").read_text())
    env = env_values(pod_spec(one(helm_docs, "DaemonSet")), "selfcheck")
    datadog = values["datadog"]
    origin_detection = str(datadog["dogstatsd"]["originDetection"]).lower()
    assert env["DD_DOGSTATSD_ORIGIN_DETECTION"] == origin_detection
    assert env["DD_LOGS_ENABLED"] == str(datadog["logs"]["enabled"]).lower()
    assert datadog["useHostPID"] is True
    assert values["agents"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1


def _with_logs(render: str) -> str:
    """The chart's render with datadog.logs.enabled: true, as _container-agent.yaml and
    _daemonset-volumes-linux.yaml render it: the pointerdir hostPath replaces the datadogrun
    emptyDir at /opt/datadog-agent/run, and the log paths and the file-tailing setting appear."""
    docs = load_all(render)
    spec = pod_spec(one(docs, "DaemonSet"))
    agent = container(spec, "agent")
    for entry in agent["env"]:
        if entry["name"] == "DD_LOGS_ENABLED":
            entry["value"] = "true"
    agent["env"].append({"name": "DD_LOGS_CONFIG_K8S_CONTAINER_USE_FILE", "value": "true"})
    agent["volumeMounts"] = [m for m in agent["volumeMounts"] if m["name"] != "datadogrun"]
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "datadogrun"]
    for name, host, path, read_only in (
        ("pointerdir", "/var/lib/datadog-agent/logs", "/opt/datadog-agent/run", False),
        ("logpodpath", "/var/log/pods", "/var/log/pods", True),
        ("logscontainerspath", "/var/log/containers", "/var/log/containers", True),
        (
            "logdockercontainerpath",
            "/var/lib/docker/containers",
            "/var/lib/docker/containers",
            True,
        ),
    ):
        spec["volumes"].append({"name": name, "hostPath": {"path": host}})
        agent["volumeMounts"].append(
            {"name": name, "mountPath": path, "mountPropagation": "None", "readOnly": read_only}
        )
    return yaml.safe_dump_all(docs)


def test_logs_component_mirrors_the_agents_log_access(kubectl: str) -> None:
    out = run(
        [str(K8S / "helm" / "post-renderer.sh")],
        stdin=_with_logs(HELM_RENDER.read_text()),
        env={"KUBECTL": kubectl, "SELFCHECK_LOGS": "true"},
    ).stdout
    spec = pod_spec(one(load_all(out), "DaemonSet"))
    assert [c["name"] for c in spec["containers"]][-1] == "selfcheck"
    sidecar = host_mounts(spec, "selfcheck")
    assert ("logpodpath", "/var/log/pods", "/var/log/pods", True) in sidecar
    assert sidecar <= host_mounts(spec, "agent")
    agent, env = env_values(spec, "agent"), env_values(spec, "selfcheck")
    for name in AGENT_SETTINGS:
        assert env.get(name) == agent.get(name), name
    checks = all_checks()
    config = load(frozenset(checks), env=env, euid=lambda: 0)
    assert "pod_logs" in required_ids(config, checks)


def test_transcription_has_the_charts_3_240_0_details() -> None:
    """The details of the chart's render a first transcription missed (helm-charts templates)."""
    docs = load_all(HELM_RENDER.read_text())
    spec = pod_spec(one(docs, "DaemonSet"))
    images = {c["image"] for c in spec["containers"] + spec["initContainers"]}
    assert images == {"registry.datadoghq.com/agent:7.81.1"}
    cluster_agent = pod_spec(one(docs, "Deployment"))["containers"][0]
    assert cluster_agent["image"] == "registry.datadoghq.com/cluster-agent:7.81.1"
    env = env_values(spec, "agent")
    assert "GODEBUG" not in env and "DD_LOGS_CONFIG_K8S_CONTAINER_USE_FILE" not in env
    assert env["DD_LOGS_CONFIG_AUTO_MULTI_LINE_DETECTION"] == "true"
    assert env["KUBERNETES"] == "yes" and env["DD_KUBELET_USE_API_SERVER"] == "false"
    assert env["DD_PROCESS_CONFIG_RUN_IN_CORE_AGENT_ENABLED"] == "true"
    run_dir = [m for m in container(spec, "agent")["volumeMounts"] if m["name"] == "datadogrun"]
    assert [m["mountPath"] for m in run_dir] == ["/opt/datadog-agent/run"]
    trace = container(spec, "trace-agent")
    assert trace["command"][:3] == [
        "trace-loader",
        "/etc/datadog-agent/datadog.yaml",
        "trace-agent",
    ]
    assert {m[0] for m in host_mounts(spec, "trace-agent")} == {
        "procdir", "cgroups", "dsdsocket", "runtimesocketdir",
    }  # fmt: skip
    assert ("runtimesocketdir", "/var/run", "/host/var/run", True) in host_mounts(
        spec, "trace-agent"
    )
    assert all(not v["hostPath"]["path"].endswith("/") for v in spec["volumes"] if "hostPath" in v)
    for probe, path in (("livenessProbe", "/live"), ("readinessProbe", "/ready"),
                        ("startupProbe", "/startup")):  # fmt: skip
        settings = container(spec, "agent")[probe]
        assert settings["httpGet"] == {"path": path, "port": 5555, "scheme": "HTTP"}
        timing = ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold")
        assert [settings[k] for k in timing] == [15, 15, 5, 6]


def test_autodiscovery_points_the_agent_at_the_sidecars_metrics(
    render: tuple[str, list[Obj]],
) -> None:
    """The annotation names the selfcheck container and its /metrics port (annotations v2)."""
    template = one(render[1], "DaemonSet")["spec"]["template"]
    checks = json.loads(template["metadata"]["annotations"][AUTODISCOVERY])
    (instance,) = checks["openmetrics"]["instances"]
    url = re.fullmatch(r"http://%%host%%:(\d+)/metrics", instance["openmetrics_endpoint"])
    assert url is not None
    assert container_port(template["spec"], "selfcheck", "selfcheck") == int(url.group(1))
    sidecar = container(template["spec"], "selfcheck")["name"]
    assert f"ad.datadoghq.com/{sidecar}.checks" == AUTODISCOVERY


# --- node mode (k8s/node): selfcheck as its own DaemonSet beside an Operator install ---------


@pytest.fixture(scope="session")
def node_yaml(kubectl: str) -> str:
    return run([kubectl, "kustomize", str(K8S / "node")]).stdout


@pytest.fixture(scope="session")
def node_spec(node_yaml: str) -> Obj:
    return pod_spec(one(load_all(node_yaml), "DaemonSet"))


def test_node_base_renders_its_own_daemonset(node_yaml: str) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in load_all(node_yaml))
    assert kinds == [
        ("DaemonSet", "selfcheck-node"),
        ("Namespace", "datadog"),
        ("ServiceAccount", "selfcheck-node"),
    ]


def test_node_mode_sees_the_node_through_the_agent_only(node_spec: Obj) -> None:
    """hostPID and nothing of the node mounted: every path is read inside the Agent's root."""
    assert node_spec["hostPID"] is True
    assert not node_spec.get("hostNetwork")
    assert node_spec["automountServiceAccountToken"] is False
    assert host_mounts(node_spec, "selfcheck") == set()
    assert "volumes" not in node_spec


def test_node_mode_identity_is_the_operator_agents(node_spec: Obj) -> None:
    """Root with the runtime's default capabilities: what reading the Agent's process needs."""
    context = effective_security_context(node_spec, "selfcheck")
    assert context["runAsUser"] == 0
    assert "capabilities" not in context and not context.get("privileged")
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_node_mode_configuration_is_understood(node_spec: Obj) -> None:
    env = env_values(node_spec, "selfcheck")
    checks = all_checks()
    config = load(frozenset(checks), env=env, euid=lambda: 0)
    assert config.mode == "node"
    assert not [name for name in env if name.startswith("DD_")]  # the Agent's own decide
    assert not config.skip  # the health port answers at the Agent pod's address
    assert {"procfs", "cgroups", "runtime_socket", "dogstatsd_socket"} <= required_ids(
        config, checks
    )
    sidecar = container(node_spec, "selfcheck")
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        assert sidecar[probe]["httpGet"]["path"] == path
        port = container_port(node_spec, "selfcheck", sidecar[probe]["httpGet"]["port"])
        assert port == config.listen_port


@pytest.fixture(scope="module")
def tls_docs(kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    """The base with the selfcheck-tls component, as a user's overlay would apply it."""
    overlay = tmp_path_factory.mktemp("tls-overlay")
    base = os.path.relpath(K8S, overlay)  # kustomize takes relative paths only
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {base}\ncomponents:\n  - {base}/components/selfcheck-tls\n"
    )
    return load_all(run([kubectl, "kustomize", str(overlay)]).stdout)


def test_tls_component_locks_metrics_and_keeps_probes_open(tls_docs: list[Obj]) -> None:
    """Probes over HTTPS on the paths the server leaves open; the web configuration where the
    server reads it, from a read-only Secret; the PodMonitor scraping with TLS and a password."""
    from selfcheck.http.access import is_open

    spec = pod_spec(one(tls_docs, "DaemonSet"))
    assert [c["name"] for c in spec["containers"]][-1] == "selfcheck"
    sidecar = container(spec, "selfcheck")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = sidecar[probe]["httpGet"]
        assert get["scheme"] == "HTTPS" and is_open(get["path"]), probe
    web = env_values(spec, "selfcheck")["SELFCHECK_WEB_CONFIG"]
    (mount,) = [m for m in sidecar["volumeMounts"] if m["name"] == "selfcheck-web"]
    assert web.startswith(mount["mountPath"] + "/") and mount["readOnly"] is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == "selfcheck-web"]
    assert volume["secret"]["secretName"] == "selfcheck-web"
    assert "selfcheck-web" not in {m["name"] for m in container(spec, "agent")["volumeMounts"]}
    endpoint = one(tls_docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]
    assert endpoint["scheme"] == "https" and not is_open(endpoint["path"])
    assert endpoint["basicAuth"]["password"] == {"name": "selfcheck-scrape", "key": "password"}
    assert endpoint["tlsConfig"]["ca"]["secret"]["name"] == "selfcheck-scrape"
