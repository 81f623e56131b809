"""A factory for small Agent pod templates, the fixed input of the lint rules' own tests.

A test names only what its rule reads: which of the chart's volumes a container mounts, its
``DD_*`` settings, its identity; every volume is the chart's hostPath (or an ``emptyDir`` when
asked) at the chart's mount path (DataDog/helm-charts ``templates/_daemonset-volumes-linux.yaml``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from selfcheck.lint.pod import PodTemplate, agent_templates

NODE_PATHS = {
    "procdir": "/proc",
    "cgroups": "/sys/fs/cgroup",
    "os-release-file": "/etc/os-release",
    "passwd": "/etc/passwd",
    "runtimesocketdir": "/var/run",
    "dsdsocket": "/var/run/datadog",
    "logpodpath": "/var/log/pods",
}
"""Each chart volume's hostPath on the node."""
MOUNT_PATHS = {
    "procdir": "/host/proc",
    "cgroups": "/host/sys/fs/cgroup",
    "os-release-file": "/host/etc/os-release",
    "passwd": "/etc/passwd",
    "runtimesocketdir": "/host/var/run",
    "dsdsocket": "/var/run/datadog",
    "logpodpath": "/var/log/pods",
}
"""Where the chart mounts each volume in the agent container."""
WRITABLE = frozenset({"dsdsocket"})
AGENT_VOLUMES = ("procdir", "cgroups", "os-release-file", "passwd", "runtimesocketdir", "dsdsocket")
"""The agent container's mounts in the chart's default render (a root Agent)."""
AGENT_ENV = {"DD_DOGSTATSD_SOCKET": "/var/run/datadog/dsd.socket"}


def container(
    name: str,
    volumes: Iterable[str] = AGENT_VOLUMES,
    env: Mapping[str, str] | None = None,
    *,
    uid: int | None = None,
    gid: int | None = None,
    read_only: Iterable[str] = (),
    security: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One container spec mounting ``volumes`` at the chart's paths, with ``security`` as its
    securityContext (and ``uid``, ``gid`` over it)."""
    forced = frozenset(read_only)
    security = dict(security or {})
    if uid is not None:
        security["runAsUser"] = uid
    if gid is not None:
        security["runAsGroup"] = gid
    return {
        "name": name,
        "image": "registry.example/selfcheck:1" if name == "selfcheck" else "datadog/agent:7",
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "volumeMounts": [
            {
                "name": volume,
                "mountPath": MOUNT_PATHS[volume],
                "readOnly": volume not in WRITABLE or volume in forced,
            }
            for volume in volumes
        ],
        "securityContext": security,
    }


def agent(volumes: Iterable[str] = AGENT_VOLUMES, **env: str) -> dict[str, Any]:
    """The agent container with the chart's DogStatsD socket and ``env`` over it."""
    return container("agent", volumes, {**AGENT_ENV, **env})


def pod(
    *containers: dict[str, Any],
    host_pid: bool = True,
    groups: Iterable[int] = (),
    empty: Iterable[str] = (),
) -> PodTemplate:
    """A Pod of ``containers``; every volume they mount is the node's, or an emptyDir if
    named in ``empty``."""
    names = {m["name"] for c in containers for m in c["volumeMounts"]}
    volumes = [
        {"name": n, "emptyDir": {}}
        if n in empty
        else {"name": n, "hostPath": {"path": NODE_PATHS[n]}}
        for n in sorted(names)
    ]
    spec: dict[str, Any] = {
        "hostPID": host_pid,
        "containers": list(containers),
        "volumes": volumes,
        "securityContext": {"supplementalGroups": list(groups)},
    }
    doc = {"kind": "Pod", "metadata": {"name": "datadog"}, "spec": spec}
    return agent_templates([doc])[0]


def without(volume: str, volumes: Iterable[str] = AGENT_VOLUMES) -> tuple[str, ...]:
    """``volumes`` less one."""
    return tuple(v for v in volumes if v != volume)
