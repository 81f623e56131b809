"""Reading the rendered manifests, and turning a pod's container into ``docker run`` flags.

The container test must run the image with the manifest's own settings, not with settings
retyped into the test: ``docker_run_args`` reads the container, the pod's volumes, the pod
and container ``securityContext``, the environment and ``hostPID`` from the rendered spec and
maps each to the flag the kubelet's runtime would apply. Anything it cannot map faithfully
raises ``UntranslatableError``, so a manifest change the test cannot represent fails loudly
instead of being dropped.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

# What the kubelet's runtime does for each mountPropagation (CRI: private, host-to-container,
# bidirectional); Kubernetes' default is None, a private mount.
_PROPAGATION = {None: "rprivate", "None": "rprivate", "HostToContainer": "rslave",
                "Bidirectional": "rshared"}  # fmt: skip


class UntranslatableError(ValueError):
    """A spec field the docker translation cannot reproduce faithfully."""


def load_all(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def one(docs: Iterable[Obj], kind: str, name: str | None = None) -> Obj:
    """The single document of ``kind`` (and ``name``); fails when there are none or several."""
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(daemonset: Obj) -> Obj:
    spec: Obj = daemonset["spec"]["template"]["spec"]
    return spec


def container(spec: Mapping[str, Any], name: str) -> Obj:
    for item in spec["containers"]:
        if item["name"] == name:
            found: Obj = item
            return found
    raise KeyError(f"no container {name!r} in {[c['name'] for c in spec['containers']]}")


def effective_security_context(spec: Mapping[str, Any], name: str) -> Obj:
    """Pod-level fields the container inherits, overridden by the container's own."""
    pod = spec.get("securityContext") or {}
    own = container(spec, name).get("securityContext") or {}
    inherited = ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile", "seLinuxOptions",
                 "appArmorProfile")  # fmt: skip
    merged: Obj = {k: pod[k] for k in inherited if k in pod}
    merged.update(own)
    if "supplementalGroups" in pod:
        merged["supplementalGroups"] = list(pod["supplementalGroups"])
    return merged


def host_mounts(spec: Mapping[str, Any], name: str) -> set[tuple[str, str, str, bool]]:
    """``(volume, host path, mount path, read-only)`` for each hostPath mount of a container."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = set()
    for mount in container(spec, name).get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "hostPath" in volume:
            mounts.add((mount["name"], volume["hostPath"]["path"].rstrip("/") or "/",
                        mount["mountPath"], bool(mount.get("readOnly", False))))  # fmt: skip
    return mounts


def env_values(spec: Mapping[str, Any], name: str) -> dict[str, str]:
    """The container's literal ``env`` values (``valueFrom`` entries are left out)."""
    return {e["name"]: e["value"] for e in container(spec, name).get("env", []) if "value" in e}


def container_port(spec: Mapping[str, Any], name: str, port: int | str) -> int:
    """Resolve a probe's port, which may name one of the container's ports."""
    if isinstance(port, int):
        return port
    for item in container(spec, name).get("ports", []):
        if item.get("name") == port:
            number: int = item["containerPort"]
            return number
    raise KeyError(f"container {name!r} has no port named {port!r}")


def without_host_pid(spec: Mapping[str, Any]) -> Obj:
    copied: Obj = copy.deepcopy(dict(spec))
    copied.pop("hostPID", None)
    return copied


@dataclass(frozen=True, slots=True)
class HostPaths:
    """Where this machine provides each host path: the real one unless remapped.

    ``remap`` maps a host path prefix (``/var/run``) to a directory standing in for it, for
    the paths a test must own (sockets of daemons it starts); everything else is the
    machine's real path.
    """

    remap: Mapping[str, Path]

    def resolve(self, host_path: str) -> Path:
        path = host_path.rstrip("/") or "/"
        for prefix, target in sorted(self.remap.items(), key=lambda kv: -len(kv[0])):
            if path == prefix or path.startswith(prefix + "/"):
                return Path(target) / path[len(prefix) :].lstrip("/")
        return Path(path)


def _mount_flag(mount: Mapping[str, Any], volume: Mapping[str, Any], hosts: HostPaths) -> str:
    if "subPath" in mount or "subPathExpr" in mount:
        raise UntranslatableError(f"mount {mount['name']}: subPath")
    target = mount["mountPath"]
    if "hostPath" in volume:
        host = volume["hostPath"]
        source = hosts.resolve(host["path"])
        kind = host.get("type", "")
        if kind == "DirectoryOrCreate":
            source.mkdir(parents=True, exist_ok=True)
        elif kind not in ("", "Directory", "File", "Socket"):
            raise UntranslatableError(f"hostPath type {kind}")
        propagation = _PROPAGATION.get(mount.get("mountPropagation"))
        if propagation is None:
            raise UntranslatableError(f"mountPropagation {mount.get('mountPropagation')}")
        flag = f"type=bind,source={source},target={target},bind-propagation={propagation}"
    elif "emptyDir" in volume:
        flag = f"type=tmpfs,target={target}"
    else:
        raise UntranslatableError(f"volume {volume['name']}: only hostPath and emptyDir are mapped")
    if mount.get("readOnly"):
        flag += ",readonly"
    return flag


def _security_flags(context: Mapping[str, Any]) -> list[str]:
    flags: list[str] = []
    user, group = context.get("runAsUser"), context.get("runAsGroup")
    if user is not None:
        flags += ["--user", f"{user}:{group}" if group is not None else str(user)]
    elif group is not None:
        raise UntranslatableError("runAsGroup without runAsUser")
    for gid in context.get("supplementalGroups", []):
        flags += ["--group-add", str(gid)]
    if context.get("privileged"):
        flags.append("--privileged")
    if context.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    capabilities = context.get("capabilities") or {}
    for cap in capabilities.get("drop", []):
        flags += ["--cap-drop", cap]
    for cap in capabilities.get("add", []):
        flags += ["--cap-add", cap]
    # The kubelet runs containers Unconfined unless a profile is set (or seccompDefault is
    # on); Docker would apply its own default profile, so make the kubelet's choice explicit.
    seccomp = (context.get("seccompProfile") or {}).get("type", "Unconfined")
    if seccomp == "Unconfined":
        flags += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        raise UntranslatableError(f"seccompProfile {seccomp}")
    return flags


def docker_run_args(spec: Mapping[str, Any], name: str, hosts: HostPaths) -> list[str]:
    """``docker run`` options (everything before the image) for one container of a pod spec.

    The pod network becomes a private network namespace (``--network none``: loopback only,
    which is where the test reaches the probes); ``hostNetwork`` becomes ``--network host``.
    The kubelet's service variables are set as it sets them in every container.
    """
    item = container(spec, name)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    args = ["--network", "host" if spec.get("hostNetwork") else "none"]
    if spec.get("hostPID"):
        args += ["--pid", "host"]
    if spec.get("hostIPC"):
        args += ["--ipc", "host"]
    args += _security_flags(effective_security_context(spec, name))
    for mount in item.get("volumeMounts", []):
        args += ["--mount", _mount_flag(mount, volumes[mount["name"]], hosts)]
    for entry in item.get("env", []):
        if "value" not in entry:
            raise UntranslatableError(f"env {entry['name']}: valueFrom")
        args += ["--env", f"{entry['name']}={entry['value']}"]
    if item.get("envFrom"):
        raise UntranslatableError("envFrom")
    args += ["--env", "KUBERNETES_SERVICE_HOST=127.0.0.1", "--env", "KUBERNETES_SERVICE_PORT=443"]
    command = item.get("command")
    if command:
        if len(command) != 1:
            raise UntranslatableError("command with arguments: use args")
        args += ["--entrypoint", command[0]]
    return args


def container_args(spec: Mapping[str, Any], name: str) -> list[str]:
    """What follows the image on the ``docker run`` line: the container's ``args``."""
    return [str(a) for a in container(spec, name).get("args", [])]


def host_side(spec: Mapping[str, Any], name: str, path: str, hosts: HostPaths) -> Path:
    """Where a path inside the container lives on this machine, through its hostPath mount."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    best: tuple[str, Path] | None = None
    for mount in container(spec, name).get("volumeMounts", []):
        target = mount["mountPath"].rstrip("/")
        if (path == target or path.startswith(target + "/")) and (
            best is None or len(target) > len(best[0])
        ):
            host = volumes[mount["name"]].get("hostPath")
            if host is None:
                raise UntranslatableError(f"{path} is not on a hostPath mount")
            best = (target, hosts.resolve(host["path"]))
    if best is None:
        raise UntranslatableError(f"{path} is on no mount of container {name!r}")
    target, source = best
    return source / path[len(target) :].lstrip("/")
