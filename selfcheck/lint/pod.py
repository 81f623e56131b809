"""The Datadog Agent pod templates in a manifest, as values the rules can ask questions of.

A rendered manifest is untyped YAML: any field may be missing, ``null`` or the wrong type
(``tolerations:`` with no value is common in Helm output). Everything here reads defensively
and keeps only what the rules judge: ``hostPID``, the effective identity of each container
(pod ``securityContext`` inherited, the container's own over it, the image's default user
when neither sets one), its volume mounts resolved to their volumes, and its literal
environment. ``valueFrom`` and ``envFrom`` values are not in the manifest; they are listed as
unknown, never guessed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from selfcheck.lint.loader import InputError, Obj, objects

AGENT_ROLES = ("agent", "trace-agent", "process-agent", "system-probe")
SIDECAR = "selfcheck"
AGENT_IMAGE_MARKS = ("datadog/agent", "/agent:")
IMAGE_DEFAULT_UID = {SIDECAR: 100}
"""The selfcheck image runs as 100:0 (Dockerfile); the Agent's image runs as root."""
IMAGE_DEFAULT_GID = {SIDECAR: 0}

# Inherited from the pod's securityContext when the container does not set them.
_INHERITED = (
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "seccompProfile",
    "seLinuxOptions",
    "appArmorProfile",
)


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def normal_path(path: str) -> str:
    """``/var/run/datadog/`` and ``/var/run//datadog`` are one path; the chart varies."""
    return posixpath.normpath(path) if path.startswith("/") else path


def under(path: str, directory: str) -> str | None:
    """``path`` relative to ``directory`` ("" for itself), or ``None`` when outside it."""
    path, directory = normal_path(path), normal_path(directory)
    if path == directory:
        return ""
    prefix = directory.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


@dataclass(frozen=True, slots=True)
class Mount:
    """One volumeMount with what its volume is; ``source`` is the volume's type key."""

    volume: str
    mount_path: str
    read_only: bool
    recursive_read_only: str
    source: str
    host_path: str = ""
    host_type: str = ""
    sub_path: str = ""

    @property
    def is_host(self) -> bool:
        return self.source == "hostPath"

    def origin(self, relative: str) -> str:
        """What a file at ``relative`` below the mount is, pod-wide: the node's path for a
        hostPath, else the volume's name and path (an emptyDir is shared within the pod)."""
        parts = [p for p in (self.sub_path, relative) if p]
        if self.is_host:
            return normal_path("/".join([self.host_path, *parts]))
        return "/".join([f"{self.source}:{self.volume}", *parts])


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    role: str
    image: str
    env: Mapping[str, str]
    unknown_env: tuple[str, ...]
    env_from: tuple[str, ...]
    mounts: tuple[Mount, ...]
    security: Mapping[str, Any]
    raw: Mapping[str, Any]

    def mount_for(self, path: str) -> tuple[Mount, str] | None:
        """The mount a container path is on (the longest mountPath) and the rest of it."""
        best: tuple[Mount, str] | None = None
        for mount in self.mounts:
            rest = under(path, mount.mount_path)
            if rest is not None and (
                best is None or len(mount.mount_path) > len(best[0].mount_path)
            ):
                best = (mount, rest)
        return best

    def mount_named(self, volume: str) -> Mount | None:
        return next((m for m in self.mounts if m.volume == volume), None)

    @property
    def uid(self) -> int | None:
        """The UID the process runs as; ``None`` when unknowable (an unknown image's default)."""
        value = self.security.get("runAsUser")
        if isinstance(value, int):
            return value
        if self.role == SIDECAR:
            return IMAGE_DEFAULT_UID[SIDECAR]
        return 0 if self.role in AGENT_ROLES else None

    @property
    def gid(self) -> int:
        value = self.security.get("runAsGroup")
        return value if isinstance(value, int) else IMAGE_DEFAULT_GID.get(self.role, 0)

    def setting(self, name: str, default: str | None = None) -> str | None:
        return self.env.get(name, default)

    @property
    def capabilities_added(self) -> tuple[str, ...]:
        caps = _dict(self.security.get("capabilities"))
        return tuple(_normal_cap(c) for c in _list(caps.get("add")) if isinstance(c, str))

    @property
    def capabilities_dropped(self) -> tuple[str, ...]:
        caps = _dict(self.security.get("capabilities"))
        return tuple(_normal_cap(c) for c in _list(caps.get("drop")) if isinstance(c, str))

    @property
    def privileged(self) -> bool:
        return self.security.get("privileged") is True


def _normal_cap(name: str) -> str:
    upper = name.strip().upper()
    return upper if upper == "ALL" or upper.startswith("CAP_") else f"CAP_{upper}"


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """One Agent pod: a DaemonSet's template or a Pod."""

    kind: str
    name: str
    namespace: str
    host_pid: bool
    host_network: bool
    host_ipc: bool
    pod_security: Mapping[str, Any]
    containers: tuple[Container, ...]
    volumes: Mapping[str, Obj]
    other_containers: tuple[str, ...] = ()
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    """How the pod was had when not read as it is: "Operator 1.29 rules" (lint.operator)."""
    fields: Mapping[str, str] = field(default_factory=dict)
    """For a pod built from a resource: each fact (``hostPID``, ``volume:<name>``,
    ``env:<container>:<NAME>``...) and the resource's field path that produced it."""

    @property
    def title(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        built = f" (built by the {self.source})" if self.source else ""
        return f"{self.kind} {where}{self.name}{built}"

    def role(self, role: str) -> Container | None:
        return next((c for c in self.containers if c.role == role), None)

    @property
    def agent(self) -> Container:
        found = self.role("agent")
        if found is None:  # pragma: no cover - templates without one are never built
            raise AssertionError("no agent container")
        return found

    @property
    def sidecar(self) -> Container | None:
        return self.role(SIDECAR)

    @property
    def supplemental_groups(self) -> tuple[int, ...]:
        groups = _list(self.pod_security.get("supplementalGroups"))
        return tuple(g for g in groups if isinstance(g, int))


def _mounts(item: Obj, volumes: Mapping[str, Obj]) -> tuple[Mount, ...]:
    mounts = []
    for raw in _list(item.get("volumeMounts")):
        entry = _dict(raw)
        name, path = _str(entry.get("name")), _str(entry.get("mountPath"))
        if not name or not path:
            continue
        volume = volumes.get(name, {})
        source = next((k for k in volume if k != "name"), "missing")
        host = _dict(volume.get("hostPath"))
        mounts.append(
            Mount(
                volume=name,
                mount_path=normal_path(path),
                read_only=entry.get("readOnly") is True,
                recursive_read_only=_str(entry.get("recursiveReadOnly")),
                source=source,
                host_path=normal_path(_str(host.get("path"))),
                host_type=_str(host.get("type")),
                sub_path=_str(entry.get("subPath")),
            )
        )
    return tuple(mounts)


def _env(item: Obj) -> tuple[dict[str, str], tuple[str, ...]]:
    """Literal values (later entries win, as the kubelet does); names set from elsewhere."""
    values: dict[str, str] = {}
    unknown: list[str] = []
    for raw in _list(item.get("env")):
        entry = _dict(raw)
        name = _str(entry.get("name"))
        if not name:
            continue
        if "valueFrom" in entry:
            unknown.append(name)
            values.pop(name, None)
        else:
            value = entry.get("value")
            values[name] = "" if value is None else str(value)
    return values, tuple(dict.fromkeys(unknown))


def _security(pod: Obj, item: Obj) -> Obj:
    own = _dict(item.get("securityContext"))
    merged: Obj = {k: pod[k] for k in _INHERITED if k in pod and pod[k] is not None}
    merged.update({k: v for k, v in own.items() if v is not None})
    return merged


def _role(item: Obj) -> str:
    name, image = _str(item.get("name")), _str(item.get("image"))
    if name in (*AGENT_ROLES, SIDECAR):
        return name
    if "selfcheck" in image.rsplit("/", 1)[-1]:
        return SIDECAR
    if any(mark in image for mark in AGENT_IMAGE_MARKS):
        return "agent-image"
    return ""


def _container(item: Obj, role: str, pod: Obj, volumes: Mapping[str, Obj]) -> Container:
    env, unknown = _env(item)
    env_from = tuple(
        _str(_dict(ref).get("name")) or kind
        for raw in _list(item.get("envFrom"))
        for kind, ref in _dict(raw).items()
        if kind in ("configMapRef", "secretRef")
    )
    return Container(
        name=_str(item.get("name")),
        role=role,
        image=_str(item.get("image")),
        env=env,
        unknown_env=unknown,
        env_from=env_from,
        mounts=_mounts(item, volumes),
        security=_security(_dict(pod.get("securityContext")), item),
        raw=item,
    )


def build_template(kind: str, meta: Obj, spec: Obj) -> PodTemplate | None:
    """The Agent pod of a pod spec, or ``None`` when none of its containers is the Agent."""
    volumes = {_str(_dict(v).get("name")): _dict(v) for v in _list(spec.get("volumes"))}
    items = [_dict(c) for c in _list(spec.get("containers"))]
    roles = [_role(item) for item in items]
    if not any(r in ("agent", "agent-image") for r in roles):
        return None
    if "agent" not in roles:  # the first container running the Agent's image is the agent
        roles[roles.index("agent-image")] = "agent"
    chosen: list[Container] = []
    others: list[str] = []
    for item, role in zip(items, roles, strict=True):
        if role in (*AGENT_ROLES, SIDECAR) and role not in [c.role for c in chosen]:
            chosen.append(_container(item, role, spec, volumes))
        else:
            others.append(_str(item.get("name")))
    return PodTemplate(
        kind=kind,
        name=_str(meta.get("name")) or "(unnamed)",
        namespace=_str(meta.get("namespace")),
        host_pid=spec.get("hostPID") is True,
        host_network=spec.get("hostNetwork") is True,
        host_ipc=spec.get("hostIPC") is True,
        pod_security=_dict(spec.get("securityContext")),
        containers=tuple(chosen),
        volumes=volumes,
        other_containers=tuple(others),
    )


def _namespaces(docs: Iterable[Obj]) -> dict[str, dict[str, str]]:
    labels = {}
    for doc in docs:
        if doc.get("kind") == "Namespace":
            meta = _dict(doc.get("metadata"))
            found = _dict(meta.get("labels"))
            labels[_str(meta.get("name"))] = {str(k): str(v) for k, v in found.items()}
    return labels


def agent_templates(documents: list[Any]) -> list[PodTemplate]:
    """Every Agent pod template; ``InputError`` when there is none, saying what was there."""
    docs = list(objects(documents))
    namespaces = _namespaces(docs)
    candidates = 0
    templates: list[PodTemplate] = []
    for doc in docs:
        kind, meta, spec = _str(doc.get("kind")), _dict(doc.get("metadata")), _dict(doc.get("spec"))
        if kind == "DaemonSet":
            pod_spec = _dict(_dict(spec.get("template")).get("spec"))
        elif kind == "Pod":
            pod_spec = spec
        else:
            continue
        candidates += 1
        template = build_template(kind, meta, pod_spec)
        if template is not None:
            ns = template.namespace
            templates.append(
                template if ns not in namespaces else _with_labels(template, namespaces[ns])
            )
    if templates:
        return templates
    if candidates:
        raise InputError(
            f"no Datadog Agent pod template among {candidates} DaemonSet/Pod objects: none has a "
            "container named agent or running a datadog/agent image"
        )
    kinds = sorted({_str(d.get("kind")) for d in docs})
    shown = f" (found: {', '.join(kinds[:6])})" if kinds else " (no Kubernetes object at all)"
    raise InputError(f"no DaemonSet or Pod in the input{shown}")


def _with_labels(template: PodTemplate, labels: Mapping[str, str]) -> PodTemplate:
    from dataclasses import replace

    return replace(template, namespace_labels=dict(labels))
