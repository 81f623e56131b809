"""The node Agent's pod a DatadogAgent resource makes, built by the Operator's rules.

An Operator user reviews a ``DatadogAgent`` (``datadoghq.com/v2alpha1``), not a DaemonSet: the
DaemonSet exists only once the Operator has built it. This module builds that pod the way
DataDog/datadog-operator does, into the same pod spec ``lint.pod`` reads from a DaemonSet, so the
DaemonSet rules judge it unchanged. Each fact it renders (hostPID, a volume, a ``DD_*`` value, a
securityContext) is recorded with the resource's field path that produced it, or that would
change it, and ``fix`` names those paths instead of the chart's values.

Followed, in DataDog/datadog-operator (paths under internal/controller/datadogagent/ unless
said): the fields of api/datadoghq/v2alpha1/datadogagent_types.go and their defaults in
defaults/datadogagent_default.go; the default containers, volumes and mounts of
component/agent/default.go with the names and paths of common/const.go and common/volumes.go;
merging by name or mount path as merger/volume_mount.go does; feature/dogstatsd/feature.go
(socket hostPath, ``DD_DOGSTATSD_SOCKET``, origin detection, hostPID),
feature/apm/feature.go (trace-agent, ``apmsocket``, ``DD_APM_RECEIVER_SOCKET``),
feature/logcollection/feature.go, feature/processdiscovery/feature.go and
feature/liveprocess/feature.go (``/etc/passwd``, ``/proc``, ``/sys/fs/cgroup``, in the core
agent from Agent 7.60, feature/utils/utils.go), feature/{cws,npm,usm,gpu}/feature.go (hostPID),
global/agent.go (``dockerSocketPath`` over ``criSocketPath``), and, applied last,
override/podtemplatespec.go and override/container.go. Versions: APM and process discovery on by
default from v1.3.0 (process discovery did not exist before), CWS, NPM and USM set hostPID from
v1.22.0 (PR #2365), GPU from v1.29.0. What is not rendered: system-probe and security-agent
(no check judges them; their hostPID is), GKE Autopilot, the single-container strategy.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from selfcheck.lint.loader import InputError, Obj
from selfcheck.lint.pod import PodTemplate, build_template
from selfcheck.model import Finding, Outcome, Reason, Status

API_VERSION = "datadoghq.com/v2alpha1"
KIND = "DatadogAgent"
NEWEST = (1, 29)
"""The newest Operator release whose rules are encoded (v1.29.0)."""
OLDEST = (1, 0)
AGENT_IMAGE = "gcr.io/datadoghq/agent:7.81.1"
"""The Operator's default node Agent image (pkg/images ``AgentLatestVersion``)."""
RUN_IN_CORE_AGENT = (7, 60)
"""Agent version from which process checks run in the core agent (feature/utils/utils.go)."""
NODE = "spec.override.nodeAgent"
DEFAULT_OFF = "the Operator's default (off)"
DSD = "spec.features.dogstatsd"
APM = "spec.features.apm"
LOGS = "spec.features.logCollection"

Version = tuple[int, int]


def parse_version(text: str) -> Version:
    """``1.22``, ``v1.22.0`` or ``1.22.0-rc.1`` as (1, 22); ``InputError`` otherwise."""
    found = re.fullmatch(r"v?(\d{1,3})\.(\d{1,4})(?:\.\d{1,4})?(?:-[0-9A-Za-z.]+)?", text.strip())
    newest = ".".join(map(str, NEWEST))
    if found is None:
        raise InputError(f"--operator-version {text[:40]!r} is not a version such as {newest}")
    version = (int(found[1]), int(found[2]))
    if not OLDEST <= version <= NEWEST:
        raise InputError(
            f"--operator-version {text[:40]} is outside the rules encoded: 1.0 to {newest}"
        )
    return version


def _d(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _flag(section: Obj, key: str, default: bool) -> bool:
    value = section.get(key)
    return value if isinstance(value, bool) else default


def _items(value: Any) -> list[Obj]:
    """The mappings of a list, for a field that should be a list of objects."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(section: Obj, key: str, default: str = "") -> str:
    value = section.get(key)
    return value if isinstance(value, str) and value else default


def _host_path(name: str, path: str, kind: str = "") -> Obj:
    source: Obj = {"path": path, **({"type": kind} if kind else {})}
    return {"name": name, "hostPath": source}


def _mount(name: str, path: str, read_only: bool) -> Obj:
    return {"name": name, "mountPath": path, "readOnly": read_only}


@dataclass
class _Pod:
    """The pod spec under construction, merged the Operator's way, and each fact's field."""

    containers: dict[str, Obj]
    volumes: dict[str, Obj]
    security: Obj
    host_pid: bool = False
    fields: dict[str, str] = field(default_factory=dict)

    def volume(self, volume: Obj, by: str) -> None:
        """Added, or replacing the volume of the same name (merger/volume.go)."""
        self.volumes[volume["name"]] = volume
        self.fields[f"volume:{volume['name']}"] = by

    def mount(self, names: Iterable[str], mount: Obj) -> None:
        """Into each named container present, replacing a mount of the same name or path."""
        for name in names:
            item = self.containers.get(name)
            if item is None:
                continue
            kept = [
                m
                for m in item["volumeMounts"]
                if m.get("name") != mount["name"] and m.get("mountPath") != mount["mountPath"]
            ]
            item["volumeMounts"] = [*kept, dict(mount)]

    def env(self, names: Iterable[str] | None, name: str, value: Any, by: str) -> None:
        """Set in each named container (every container when ``None``), replacing by name."""
        for cname in self.containers if names is None else names:
            item = self.containers.get(cname)
            if item is None:
                continue
            entry = {"name": name, "value": value} if isinstance(value, str) else value
            item["env"] = [e for e in item["env"] if e.get("name") != name] + [entry]
            self.fields[f"env:{cname}:{name}"] = by


@dataclass(frozen=True, slots=True)
class _Features:
    """The settings the node Agent's pod depends on, defaulted for ``version``."""

    version: Version
    dsd_uds: bool
    dsd_path: str
    origin: bool
    apm: bool
    apm_uds: bool
    apm_path: str
    logs: bool
    discovery: bool
    live_process: bool
    host_pid_features: tuple[str, ...]

    @classmethod
    def read(cls, features: Obj, version: Version) -> _Features:
        dsd, apm = _d(features.get("dogstatsd")), _d(features.get("apm"))
        dsd_uds, apm_uds = (
            _d(dsd.get("unixDomainSocketConfig")),
            _d(apm.get("unixDomainSocketConfig")),
        )
        since = {"cws": (1, 22), "npm": (1, 22), "usm": (1, 22), "gpu": (1, 29)}
        pid_features = tuple(
            f"spec.features.{name}.enabled"
            for name, first in since.items()
            if version >= first and _flag(_d(features.get(name)), "enabled", False)
        )
        discovery = _d(features.get("processDiscovery"))
        return cls(
            version=version,
            dsd_uds=_flag(dsd_uds, "enabled", True),
            dsd_path=_text(dsd_uds, "path", "/var/run/datadog/dsd.socket"),
            origin=_flag(dsd, "originDetectionEnabled", False),
            apm=_flag(apm, "enabled", version >= (1, 3)),
            apm_uds=_flag(apm_uds, "enabled", True),
            apm_path=_text(apm_uds, "path", "/var/run/datadog/apm.socket"),
            logs=_flag(_d(features.get("logCollection")), "enabled", False),
            discovery=version >= (1, 3) and _flag(discovery, "enabled", True),
            live_process=_flag(_d(features.get("liveProcessCollection")), "enabled", False),
            host_pid_features=pid_features,
        )


def _image(override: Obj) -> str:
    """The node Agent's image after ``override.nodeAgent.image`` (name, tag; a full name wins)."""
    image = _d(override.get("image"))
    name, tag = _text(image, "name"), _text(image, "tag")
    if ":" in name.rsplit("/", 1)[-1]:
        return name
    repo = name if "/" in name else f"gcr.io/datadoghq/{name or 'agent'}"
    return f"{repo}:{tag or AGENT_IMAGE.rsplit(':', 1)[1]}"


def _agent_version(image: str) -> tuple[int, int] | None:
    found = re.search(r":(\d+)\.(\d+)", image.rsplit("/", 1)[-1])
    return (int(found[1]), int(found[2])) if found else None


def _process_in_core(version: Version, image: str) -> bool:
    """Process checks in the core agent from Agent 7.60 (the rule of Operator v1.21.0 and later;
    earlier releases are rendered with process-agent). An unreadable image version is new."""
    agent = _agent_version(image)
    return version >= (1, 21) and (agent is None or agent >= RUN_IN_CORE_AGENT)


def _base(f: _Features, image: str, in_core: bool) -> _Pod:
    """component/agent/default.go: the core agent always, trace-agent with APM, process-agent
    when process checks do not run in the core agent; the default volumes."""
    proc, cgroups = (
        _mount("procdir", "/host/proc", True),
        _mount("cgroups", "/host/sys/fs/cgroup", True),
    )
    dsd = _mount("dsdsocket", "/var/run/datadog", False)
    runtime = _mount("runtimesocketdir", "/host/var/run", True)
    run, tmp = (
        _mount("datadogrun", "/opt/datadog-agent/run", False),
        _mount("tmpdir", "/tmp", False),
    )
    mounts = {
        "agent": [proc, cgroups, dsd, runtime, run, tmp],
        "trace-agent": [proc, cgroups, dsd, runtime, tmp],
        "process-agent": [dsd, runtime, proc, tmp],
    }
    wanted = ["agent"]
    wanted += ["trace-agent"] if f.apm else []
    wanted += ["process-agent"] if (f.discovery or f.live_process) and not in_core else []
    containers = {
        name: {
            "name": name,
            "image": image,
            "env": [],
            "volumeMounts": [dict(m) for m in mounts[name]],
            "securityContext": {"readOnlyRootFilesystem": True},
        }
        for name in wanted
    }
    pod = _Pod(containers, {}, {"runAsUser": 0})
    default = "the Operator's default pod (component/agent/default.go)"
    for volume in (
        _host_path("procdir", "/proc"),
        _host_path("cgroups", "/sys/fs/cgroup"),
        {"name": "dsdsocket", "emptyDir": {}},
        _host_path("runtimesocketdir", "/var/run"),
        {"name": "datadogrun", "emptyDir": {}},
        {"name": "tmpdir", "emptyDir": {}},
    ):
        pod.volume(volume, default)
    pod.env(["agent"], "DD_HEALTH_PORT", "5555", f"{NODE}.containers.agent.healthPort")
    pod.env(None, "KUBERNETES", "yes", default)
    pod.env(None, "DD_CLUSTER_AGENT_ENABLED", "true", default)
    pod.env(None, "DD_KUBELET_HOST", {"name": "DD_KUBELET_HOST", "valueFrom": {}}, default)
    pod.fields["hostPID"] = DEFAULT_OFF
    pod.fields["securityContext"] = f"{NODE}.securityContext"
    for name in containers:
        pod.fields[f"securityContext:{name}"] = f"{NODE}.containers.{name}.securityContext"
    return pod


def _dogstatsd(pod: _Pod, f: _Features, features: Obj) -> None:
    """feature/dogstatsd/feature.go."""
    dsd = _d(features.get("dogstatsd"))
    on = f"{DSD}.unixDomainSocketConfig.enabled"
    pod.env(["agent"], "DD_DOGSTATSD_NON_LOCAL_TRAFFIC", "true", f"{DSD}.nonLocalTraffic")
    if _flag(_d(dsd.get("hostPortConfig")), "enabled", False):
        pod.env(["agent"], "DD_DOGSTATSD_PORT", "8125", f"{DSD}.hostPortConfig.enabled")
    if f.dsd_uds:
        directory = posixpath.dirname(f.dsd_path) or "/"
        pod.volume(_host_path("dsdsocket", directory, "DirectoryOrCreate"), on)
        pod.mount(["agent"], _mount("dsdsocket", "/var/run/datadog", False))
        socket = posixpath.join("/var/run/datadog", posixpath.basename(f.dsd_path))
        pod.env(None, "DD_DOGSTATSD_SOCKET", socket, on)
    else:
        pod.fields["volume:dsdsocket"] = on
        pod.fields["env:agent:DD_DOGSTATSD_SOCKET"] = on
    if f.origin:
        by = f"{DSD}.originDetectionEnabled"
        pod.env(["agent"], "DD_DOGSTATSD_ORIGIN_DETECTION", "true", by)
        pod.env(["agent"], "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT", "true", by)
        cardinality = _text(dsd, "tagCardinality")
        if cardinality:
            pod.env(["agent"], "DD_DOGSTATSD_TAG_CARDINALITY", cardinality, f"{DSD}.tagCardinality")
        if f.dsd_uds:
            pod.host_pid = True
            pod.fields["hostPID"] = f"{by} with {on}"


def _apm(pod: _Pod, f: _Features) -> None:
    """feature/apm/feature.go: in the trace-agent only; its socket volume takes the place of
    dsdsocket at /var/run/datadog there (same mount path)."""
    on = f"{APM}.unixDomainSocketConfig.enabled"
    if not f.apm:
        pod.fields["env:trace-agent:DD_APM_RECEIVER_SOCKET"] = f"{APM}.enabled"
        return
    pod.env(["trace-agent"], "DD_APM_ENABLED", "true", f"{APM}.enabled")
    if f.apm_uds:
        directory = posixpath.dirname(f.apm_path) or "/"
        socket = posixpath.join("/var/run/datadog", posixpath.basename(f.apm_path))
        pod.env(["trace-agent"], "DD_APM_RECEIVER_SOCKET", socket, on)
        pod.volume(_host_path("apmsocket", directory, "DirectoryOrCreate"), on)
        pod.mount(["trace-agent"], _mount("apmsocket", "/var/run/datadog", False))
    else:
        pod.fields["env:trace-agent:DD_APM_RECEIVER_SOCKET"] = on


def _logs(pod: _Pod, f: _Features, features: Obj) -> None:
    """feature/logcollection/feature.go: the pointer directory and the three log paths."""
    logs = _d(features.get("logCollection"))
    on = f"{LOGS}.enabled"
    pod.fields["env:agent:DD_LOGS_ENABLED"] = on
    if not f.logs:
        pod.fields["volume:logpodpath"] = on
        return
    docker, pods, links = "/var/lib/docker/containers", "/var/log/pods", "/var/log/containers"
    paths = (
        ("datadogrun", "tempStoragePath", "/var/lib/datadog-agent/logs", "/opt/datadog-agent/run"),
        ("logpodpath", "podLogsPath", pods, pods),
        ("logdockercontainerpath", "containerLogsPath", docker, docker),
        ("logscontainerspath", "containerSymlinksPath", links, links),
    )
    for name, key, default, mount_path in paths:
        read_only = name != "datadogrun"
        pod.volume(_host_path(name, _text(logs, key, default)), f"{LOGS}.{key}")
        pod.mount(["agent"], _mount(name, mount_path, read_only))
    pod.env(["agent"], "DD_LOGS_ENABLED", "true", on)
    collect_all = "true" if _flag(logs, "containerCollectAll", False) else "false"
    pod.env(
        ["agent"],
        "DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL",
        collect_all,
        f"{LOGS}.containerCollectAll",
    )
    files = "true" if _flag(logs, "containerCollectUsingFiles", True) else "false"
    pod.env(
        ["agent"],
        "DD_LOGS_CONFIG_K8S_CONTAINER_USE_FILE",
        files,
        f"{LOGS}.containerCollectUsingFiles",
    )


def _processes(pod: _Pod, f: _Features, in_core: bool) -> None:
    """feature/processdiscovery and feature/liveprocess: the node's passwd, cgroups and /proc,
    in the container that runs the process checks."""
    where = "agent" if in_core else "process-agent"
    if f.discovery or f.live_process:
        by = (
            "spec.features.liveProcessCollection.enabled"
            if f.live_process
            else "spec.features.processDiscovery.enabled"
        )
        pod.env(["agent", "process-agent"], "DD_PROCESS_CONFIG_RUN_IN_CORE_AGENT_ENABLED",
                "true" if in_core else "false", by)  # fmt: skip
        for name, host, path in (
            ("passwd", "/etc/passwd", "/etc/passwd"),
            ("cgroups", "/sys/fs/cgroup", "/host/sys/fs/cgroup"),
            ("procdir", "/proc", "/host/proc"),
        ):
            pod.volume(
                _host_path(name, host), by if name == "passwd" else pod.fields[f"volume:{name}"]
            )
            pod.mount([where], _mount(name, path, True))
    else:
        pod.fields["volume:passwd"] = "spec.features.processDiscovery.enabled"
    if f.discovery:
        pod.env([where], "DD_PROCESS_CONFIG_PROCESS_DISCOVERY_ENABLED", "true",
                "spec.features.processDiscovery.enabled")  # fmt: skip
    if f.live_process:
        pod.env([where], "DD_PROCESS_CONFIG_PROCESS_COLLECTION_ENABLED", "true",
                "spec.features.liveProcessCollection.enabled")  # fmt: skip
    pod.fields.setdefault("volume:os-release-file", "spec.features.cws.enabled")


def _runtime_socket(pod: _Pod, global_: Obj) -> None:
    """global/agent.go: ``dockerSocketPath`` wins over ``criSocketPath``; the socket itself is
    mounted at ``/host<path>`` in place of the default ``/var/run``."""
    docker, cri = _text(global_, "dockerSocketPath"), _text(global_, "criSocketPath")
    names = ("agent", "process-agent", "trace-agent")
    if docker or cri:
        key = "dockerSocketPath" if docker else "criSocketPath"
        path = docker or cri
        by = f"spec.global.{key}"
        inside = posixpath.join("/host", path.lstrip("/"))
        if docker:
            pod.env(None, "DOCKER_HOST", f"unix://{inside}", by)
        else:
            pod.env(None, "DD_CRI_SOCKET_PATH", inside, by)
        pod.volume(_host_path("runtimesocketdir", path), by)
        pod.mount(names, _mount("runtimesocketdir", inside, True))
    else:
        pod.fields["volume:runtimesocketdir"] = "spec.global.criSocketPath"


def _env_entries(raw: Any) -> list[Obj]:
    return [e for e in _items(raw) if isinstance(e.get("name"), str)]


def _add_env(pod: _Pod, names: list[str] | None, entries: list[Obj], by: str) -> None:
    for entry in entries:
        value: Any = entry if "valueFrom" in entry else str(entry.get("value") or "")
        pod.env(names, entry["name"], value, by)


def _override(pod: _Pod, override: Obj) -> None:
    """override/podtemplatespec.go and override/container.go, in their order: env, the
    containers, volumes, the pod's securityContext, hostPID last."""
    _add_env(pod, None, _env_entries(override.get("env")), f"{NODE}.env")
    for cname, raw in _d(override.get("containers")).items():
        item, path = _d(raw), f"{NODE}.containers.{cname}"
        if cname not in pod.containers:
            continue
        if isinstance(item.get("healthPort"), int):
            pod.env([cname], "DD_HEALTH_PORT", str(item["healthPort"]), f"{path}.healthPort")
        _add_env(pod, [cname], _env_entries(item.get("env")), f"{path}.env")
        for mount in _items(item.get("volumeMounts")):
            if isinstance(mount.get("name"), str) and isinstance(mount.get("mountPath"), str):
                pod.mount([cname], mount)
                pod.fields[f"volume:{mount['name']}"] = f"{path}.volumeMounts"
        security = item.get("securityContext")
        if isinstance(security, dict):
            pod.containers[cname]["securityContext"] = {"readOnlyRootFilesystem": True, **security}
    for volume in _items(override.get("volumes")):
        if isinstance(volume.get("name"), str):
            pod.volume(volume, f"{NODE}.volumes")
    if isinstance(override.get("securityContext"), dict):
        pod.security = dict(override["securityContext"])
    if isinstance(override.get("hostPID"), bool):
        pod.host_pid = override["hostPID"]
        pod.fields["hostPID"] = f"{NODE}.hostPID"


def build(resource: Obj, version: Version) -> PodTemplate:
    """The node Agent's pod for ``resource`` under the Operator ``version``'s rules."""
    spec = _d(resource.get("spec"))
    meta = _d(resource.get("metadata"))
    features, global_ = _d(spec.get("features")), _d(spec.get("global"))
    override = _d(_d(spec.get("override")).get("nodeAgent"))
    f = _Features.read(features, version)
    image = _image(override)
    in_core = _process_in_core(version, image)
    pod = _base(f, image, in_core)
    # The Operator's order (component_reconciler.go): global settings, features, the override.
    _add_env(pod, None, _env_entries(global_.get("env")), "spec.global.env")
    _runtime_socket(pod, global_)
    _dogstatsd(pod, f, features)
    _apm(pod, f)
    _logs(pod, f, features)
    _processes(pod, f, in_core)
    if f.host_pid_features:
        pod.host_pid = True
        pod.fields["hostPID"] = " / ".join(f.host_pid_features)
    _override(pod, override)
    pod_spec = {
        "hostPID": pod.host_pid,
        "hostNetwork": override.get("hostNetwork") is True,
        "securityContext": pod.security,
        "containers": list(pod.containers.values()),
        "volumes": list(pod.volumes.values()),
    }
    shown = ".".join(map(str, version))
    template = build_template(KIND, meta, pod_spec)
    if template is None:  # pragma: no cover - the agent container is always rendered
        raise InputError("the DatadogAgent rendered no agent container")
    return replace(template, source=f"Operator {shown} rules", fields=dict(pod.fields))


def resources(docs: Iterable[Obj]) -> list[Obj]:
    """The DatadogAgent objects; ``InputError`` for another API version of the kind."""
    found = []
    for doc in docs:
        if doc.get("kind") != KIND:
            continue
        if doc.get("apiVersion") != API_VERSION:
            raise InputError(
                f"DatadogAgent {str(doc.get('apiVersion'))[:40]} is not linted: only "
                f"{API_VERSION} (the Operator's v1.0 and later) is"
            )
        found.append(doc)
    return found


# What each (check, reason) rests on in the resource: the facts whose field paths name the fix.
_CHECK_FACTS: Mapping[str, tuple[str, ...]] = {
    "procfs": ("volume:procdir", "env:agent:HOST_PROC"),
    "cgroups": ("volume:cgroups", "env:agent:DD_CONTAINER_CGROUP_ROOT"),
    "os_release": ("volume:os-release-file",),
    "passwd": ("volume:passwd", "securityContext", "securityContext:agent"),
    "runtime_socket": ("volume:runtimesocketdir", "env:agent:DD_CRI_SOCKET_PATH",
                       "env:agent:DOCKER_HOST", "securityContext"),
    "dogstatsd_socket": ("env:agent:DD_DOGSTATSD_SOCKET", "volume:dsdsocket"),
    "apm_socket": ("env:trace-agent:DD_APM_RECEIVER_SOCKET", "volume:apmsocket"),
    "pod_logs": ("env:agent:DD_LOGS_ENABLED", "volume:logpodpath", "securityContext"),
    "agent_health": ("env:agent:DD_HEALTH_PORT",),
    "security": ("securityContext:agent", "securityContext"),
}  # fmt: skip


def _host_pid_fix(fields: Mapping[str, str]) -> str:
    auto = (
        f"with {DSD}.originDetectionEnabled and {DSD}.unixDomainSocketConfig.enabled both true "
        "the Operator sets hostPID itself (feature/dogstatsd/feature.go); APM never does"
    )
    if fields.get("hostPID") == f"{NODE}.hostPID":
        return (
            f"Set {NODE}.hostPID: true, or remove it: it is false, and it is applied last, over "
            f"every feature; without it, {auto}."
        )
    return f"Set {NODE}.hostPID: true, or: {auto}."


_LEADS: Mapping[tuple[str, Reason], str] = {
    ("dogstatsd_socket", Reason.ENOENT): (
        f"Set {DSD}.unixDomainSocketConfig.enabled: true (the default): the Operator then "
        "mounts the node's socket directory (the path's directory, /var/run/datadog by default) "
        "as the hostPath volume dsdsocket and sets DD_DOGSTATSD_SOCKET; with it off, dsdsocket "
        "is an emptyDir no application pod reaches."
    ),
    ("apm_socket", Reason.ENOENT): (
        f"Set {APM}.enabled and {APM}.unixDomainSocketConfig.enabled: true: the Operator then "
        "mounts the socket's node directory (apmsocket) in the trace-agent and sets "
        "DD_APM_RECEIVER_SOCKET there."
    ),
    ("runtime_socket", Reason.ENOENT): (
        "Set spec.global.criSocketPath (or spec.global.dockerSocketPath, which wins over it) to "
        "the node's runtime socket: the Operator mounts it at /host<path> and sets "
        "DD_CRI_SOCKET_PATH (DOCKER_HOST); with neither it mounts the node's /var/run at "
        "/host/var/run."
    ),
    ("runtime_socket", Reason.EACCES): (
        f"Give a non-root Agent the socket's group: {NODE}.securityContext.supplementalGroups "
        f"(or run it as root: {NODE}.securityContext.runAsUser: 0, the Operator's default)."
    ),
    ("passwd", Reason.LOW_UID_COVERAGE): (
        "Turn on spec.features.processDiscovery.enabled (the default from Operator 1.3) or "
        "spec.features.liveProcessCollection.enabled: the Operator then mounts the node's "
        "/etc/passwd in the container that runs the process checks."
    ),
    ("passwd", Reason.IDENTITY_MISMATCH): (
        "A non-root Agent loses its own user with the node's /etc/passwd over the image's: "
        f"run it as root ({NODE}.securityContext.runAsUser: 0, the Operator's default) or turn "
        "off spec.features.processDiscovery.enabled and "
        "spec.features.liveProcessCollection.enabled."
    ),
    ("os_release", Reason.ENOENT): (
        "The Operator mounts the node's /etc/os-release (host-osrelease) only in system-probe, "
        f"for spec.features.cws.enabled: add it to the agent with {NODE}.volumes (hostPath "
        f"/etc/os-release) and {NODE}.containers.agent.volumeMounts at /host/etc/os-release."
    ),
    ("pod_logs", Reason.ENOENT): (
        f"Keep {LOGS}.podLogsPath at the node's /var/log/pods (the Operator mounts it as "
        "logpodpath when logs are on)."
    ),
    ("pod_logs", Reason.EACCES): (
        "A non-root Agent cannot read the root-owned pod logs: run it as root "
        f"({NODE}.securityContext.runAsUser: 0, the Operator's default) or give it the logs' "
        f"group in {NODE}.securityContext.supplementalGroups."
    ),
    ("os_release", Reason.PARSE_ERROR): (
        f"The volume of {NODE}.volumes mounted at /host/etc/os-release must be the node's "
        "/etc/os-release file (hostPath type File)."
    ),
}


_MOUNTED: Mapping[str, str] = {
    "procfs": "the node's /proc at /host/proc (procdir)",
    "cgroups": "the node's /sys/fs/cgroup at /host/sys/fs/cgroup (cgroups)",
    "origin_detection": "the node's /proc at /host/proc (procdir)",
}
"""What the Operator mounts in the agent container itself (component/agent/default.go)."""


def _mount_lead(check: str) -> str:
    return (
        f"The Operator mounts {_MOUNTED[check]} in the agent container itself: a field of the "
        f"resource replaced or moved it ({NODE}.volumes, {NODE}.containers.agent.volumeMounts, "
        f"or HOST_PROC / DD_CONTAINER_CGROUP_ROOT in an env): remove that change."
    )


def _bad_value_fix(outcome: Outcome, fields: Mapping[str, str]) -> str:
    """A ``DD_*`` value the Agent's parser rejects: the field that set it, by the message."""
    found = re.search(r"^([a-z-]+): (DD_[A-Z0-9_]+)", outcome.message)
    container, name = (found[1], found[2]) if found else ("agent", "")
    if not name:
        named = re.search(r"(DD_[A-Z0-9_]+)", outcome.message)
        name = named[1] if named else "the variable"
    where = fields.get(f"env:{container}:{name}", f"{NODE}.containers.{container}.env")
    if name.endswith("_PORT"):
        return (
            f"Set {name} to a port number from 1 to 65535 where the DatadogAgent sets it: {where}."
        )
    return (
        f"Set {name} to true or false where the DatadogAgent sets it: {where}. The Agent parses "
        "booleans with Go's strconv.ParseBool (1, t, T, TRUE, true, True and 0, f, F, FALSE, "
        "false, False) and reads any other value as false."
    )


_SECURITY = (
    "Each finding names what to change; in the DatadogAgent a container's securityContext is "
    f"{NODE}.containers.<name>.securityContext (capabilities, seccompConfig, "
    f"allowPrivilegeEscalation), the pod's {NODE}.securityContext, a mount's readOnly "
    f"{NODE}.containers.<name>.volumeMounts."
)


def fix(check: str, outcome: Outcome, fields: Mapping[str, str]) -> str:
    """The fix in the resource's words: a lead for the case, then every field path the check's
    facts came from; the check's own words (its Helm values taken out) only where no lead is."""
    reason = outcome.reason
    if (check, reason) == ("origin_detection", Reason.NOT_HOST_PID):
        return _host_pid_fix(fields)
    if reason == Reason.BAD_VALUE and check != "sidecar":
        return _bad_value_fix(outcome, fields)
    lead = _LEADS.get((check, reason), "")
    if not lead and check in _MOUNTED and reason != Reason.BAD_VALUE:
        lead = _mount_lead(check)
    if not lead and check == "security":
        lead = _SECURITY
    facts = _CHECK_FACTS.get(check, ())
    if check == "origin_detection":
        facts = ("volume:procdir", "env:agent:HOST_PROC")
    paths = list(
        dict.fromkeys(fields[f] for f in facts if f in fields and fields[f].startswith("spec."))
    )
    named = f"In the DatadogAgent: {', '.join(paths)}." if paths else ""
    if not lead:
        plain = _HELM.sub("", outcome.remediation)
        lead = f"What the pod needs: {plain}" if plain else ""
    return f"{lead} {named}".strip()


NO_SIDECAR = (
    "the Operator renders no selfcheck container (override.nodeAgent.containers only patches "
    "the Agent's own containers, override/container.go): run selfcheck in node mode, k8s/node "
    "(docs/node-mode.md)"
)
_HELM = re.compile(r" ?\((?:Helm|the chart|the chart's)[^)]*\)|,? ?Helm value [^;,.)]*")


def _finding_fix(finding: Finding) -> Finding:
    """A securityContext finding's fix, said where the resource sets it."""
    words = _HELM.sub("", finding.remediation)
    where = (
        f"In the DatadogAgent: {NODE}.containers.<name>.securityContext (a container's, e.g. "
        f"agent) or {NODE}.securityContext (the pod's). "
    )
    return replace(finding, remediation=where + words)


def retarget(outcome: Outcome, check: str, fields: Mapping[str, str]) -> Outcome:
    """An outcome of a pod the Operator builds, with its fixes in the resource's fields."""
    findings = tuple(_finding_fix(f) for f in outcome.findings)
    if check == "sidecar" and outcome.reason == Reason.NOT_APPLICABLE:
        return replace(outcome, message=NO_SIDECAR)
    if outcome.status in (Status.OK, Status.SKIPPED):
        return replace(outcome, findings=findings)
    remediation = fix(check, outcome, fields)
    return replace(outcome, remediation=remediation, findings=findings)
