"""Where the known Kubernetes distributions keep the runtime's socket, looked for where the
Agent can see the node.

The Agent probes only ``DOCKER_HOST``/``DD_CRI_SOCKET_PATH`` or its defaults
(DataDog/datadog-agent pkg/config/env/environment_containers.go). k3s and RKE2 put containerd's
socket at ``/run/k3s/containerd/containerd.sock`` (k3s-io/k3s pkg/agent/containerd), Bottlerocket
serves CRI at ``/run/dockershim.sock``, an absolute symlink to its containerd socket
(bottlerocket-os/bottlerocket#4074), cri-dockerd at ``/run/cri-dockerd.sock``
(Mirantis/cri-dockerd), microk8s under ``/var/snap/microk8s/common/run``
(canonical/microk8s microk8s-resources/default-args/containerd). When the Agent's own search
fails, the check looks for these inside every node directory the Agent has mounted, and names
the one there with the setting that points the Agent at it.

The search is bounded: a fixed list of node paths, each tried once per mounted directory that
holds it (no walk), and a capped read of the host's process list for the runtimes' own
``--address`` flags, which names a socket even where no mount reaches it.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from selfcheck.agentpod import volume
from selfcheck.host.files import read_capped
from selfcheck.host.root import Root
from selfcheck.host.sockets import (
    CONNECT_TIMEOUT,
    Deadline,
    classify,
    probe_stream,
    stat_socket,
)

HOST_PREFIX = "/host"
"""Where the Agent's pod mounts node directories (the chart's and the Operator's prefix)."""
MAX_PROCESSES = 4096
"""Host processes whose name is read when looking for a runtime's ``--address``."""
CMDLINE_CAP = 8192


@dataclass(frozen=True, slots=True)
class KnownSocket:
    """A runtime socket a distribution keeps at a fixed node path."""

    node_path: str
    where: str
    """Which distributions put it there, in words."""
    api: str
    """``cri`` (containerd, CRI-O, cri-dockerd) or ``docker`` (the Docker Engine API)."""


KNOWN_SOCKETS: tuple[KnownSocket, ...] = (
    KnownSocket("/run/k3s/containerd/containerd.sock", "k3s, RKE2", "cri"),
    KnownSocket(
        "/run/containerd/containerd.sock", "containerd (kubeadm, EKS, GKE, Bottlerocket)", "cri"
    ),
    KnownSocket("/run/crio/crio.sock", "CRI-O (OpenShift)", "cri"),
    KnownSocket("/run/dockershim.sock", "Bottlerocket (a symlink to containerd's)", "cri"),
    KnownSocket("/run/cri-dockerd.sock", "cri-dockerd (Docker Engine with Kubernetes)", "cri"),
    KnownSocket("/run/docker.sock", "Docker Engine", "docker"),
    KnownSocket("/var/snap/microk8s/common/run/containerd.sock", "microk8s", "cri"),
)
"""In the order a fix prefers them: a path naming its runtime first (the Agent picks its checks
by the path's name), Docker's API last."""

RUNTIME_FLAGS = {
    "containerd": ("--address", "-a"),
    "crio": ("--listen",),
    "cri-dockerd": ("--cri-dockerd-endpoint",),
    "dockerd": ("--host", "-H"),
}
"""The flag each runtime daemon takes its socket from (k3s, RKE2 and microk8s pass it)."""


def cri_runtime(path: str) -> str:
    """The Agent picks its CRI runtime by the path's name alone (environment_containers.go
    ``detectCriRuntimes``): ``containerd``, ``cri-o``, or ``cri`` (the CRI check only)."""
    if "containerd" in path:
        return "containerd"
    if "crio" in path:
        return "cri-o"
    return "cri"


@dataclass(frozen=True, slots=True)
class NodeDir:
    """A node directory as the Agent sees it: ``agent_path`` in its container is ``node_path``."""

    agent_path: str
    node_path: str


@dataclass(frozen=True, slots=True)
class Sighting:
    """A runtime socket on the node, where the Agent would open it (``agent_path``) if mounted."""

    node_path: str
    agent_path: str | None
    where: str
    api: str
    result: str
    """``ok`` when a connect succeeds within 500 ms, else the reason (``econnrefused``...)."""
    detail: str = ""

    @property
    def mounted(self) -> bool:
        return self.agent_path is not None


def aliases(node_path: str) -> tuple[str, ...]:
    """``/var/run`` is ``/run`` on every current node (a symlink, FHS 3.0): both names."""
    for one, other in (("/run", "/var/run"), ("/var/run", "/run")):
        if node_path == one or node_path.startswith(one + "/"):
            return node_path, other + node_path[len(one) :]
    return (node_path,)


def canonical(node_path: str) -> str:
    """The node path as the runtimes name it: ``/run`` rather than ``/var/run``."""
    return aliases(node_path)[-1] if node_path.startswith("/var/run") else node_path


def mounted_dirs(root: Root, settings: Iterable[str], containerized: bool = True) -> list[NodeDir]:
    """The node directories the Agent has: the ``runtimesocketdir`` volume, ``/run`` mounted
    under ``/host``, and the directory of each ``/host/...`` socket setting (the chart and the
    Operator mount exactly that directory when a socket path is set); outside a container,
    the node's own root (the Agent then probes the node's paths as they are)."""
    runtime = volume("runtimesocketdir")
    guesses = [NodeDir(runtime.mount_path, runtime.node_path), NodeDir("/host/run", "/run")]
    if not containerized:
        guesses.insert(0, NodeDir("", "/"))
    for path in settings:
        if path.startswith(HOST_PREFIX + "/"):
            node = posixpath.dirname(path[len(HOST_PREFIX) :])
            guesses.append(NodeDir(HOST_PREFIX + node, node))
    found: list[NodeDir] = []
    for guess in guesses:
        if guess not in found and _is_dir(root, guess.agent_path or "/"):
            found.append(guess)
    return found


def _is_dir(root: Root, path: str) -> bool:
    """``Path.is_dir`` raises on ``EACCES`` (Python 3.11): an unsearchable parent is not a
    directory the Agent can use either."""
    try:
        return root.at(path).is_dir()
    except OSError:
        return False


def agent_paths(node_path: str, dirs: Iterable[NodeDir]) -> list[str]:
    """Where the Agent may open ``node_path``: inside each mounted directory holding it."""
    found: list[str] = []
    for d in dirs:
        for name in aliases(node_path):
            for base in aliases(d.node_path):
                prefix = base.rstrip("/") + "/"
                if not name.startswith(prefix):
                    continue
                inside = d.agent_path + "/" + name[len(prefix) :]
                if inside not in found:
                    found.append(inside)
    return found


def search(
    root: Root,
    settings: Iterable[str],
    host_proc: str | os.PathLike[str] | None,
    pids: Iterable[int] = (),
    *,
    skip: Iterable[str] = (),
    containerized: bool = True,
    deadline: Deadline | None = None,
) -> list[Sighting]:
    """Every known or announced runtime socket on the node: the mounted ones that exist (each
    stat'd and connected within 500 ms, and within what is left of ``deadline``: the search
    stops when it is spent), then those the runtimes' flags name outside every mount.
    ``skip``: paths the Agent itself already tried (reported there)."""
    dirs = mounted_dirs(root, settings, containerized)
    announced = runtime_addresses(host_proc, pids) if host_proc is not None else []
    agents = set(skip)
    seen = set(agents)
    reported: set[str] = set()
    sightings: list[Sighting] = []
    for known in [*KNOWN_SOCKETS, *announced]:
        try:
            timeout = deadline.left(CONNECT_TIMEOUT) if deadline else CONNECT_TIMEOUT
        except TimeoutError:
            break
        paths = agent_paths(known.node_path, dirs)
        sighting = next(
            (s for p in paths if p not in seen and (s := _probe(root, p, known, timeout))), None
        )
        seen.update(paths)
        node = canonical(known.node_path)
        tried = any(p in agents for p in paths) or node in reported
        if sighting is None and known in announced and not tried:
            sighting = Sighting(node, None, known.where, known.api, "unmounted")
        if sighting is not None:
            reported.add(node)
            sightings.append(sighting)
    return sightings


def _probe(root: Root, inside: str, known: KnownSocket, timeout: float) -> Sighting | None:
    """A sighting of ``inside`` when something is there (a broken symlink counts: it is
    Bottlerocket's trap), ``None`` when nothing is."""
    node = canonical(known.node_path)
    try:
        opened = root.at(inside)
        (root.at(posixpath.dirname(inside)) / posixpath.basename(inside)).lstat()
    except OSError:
        return None  # nothing there, or a directory this user may not search: not a sighting
    try:
        stat_socket(opened)
        probe_stream(opened, timeout)
    except OSError as error:
        return Sighting(node, inside, known.where, known.api, str(classify(error)), str(error))
    return Sighting(node, inside, known.where, known.api, "ok")


def runtime_addresses(host_proc: str | os.PathLike[str], pids: Iterable[int]) -> list[KnownSocket]:
    """The unix sockets the node's runtime daemons were told to serve (``--address`` and the
    like), read from the host's process list: at most ``MAX_PROCESSES`` names, then the
    command line of the few runtimes among them."""
    found: list[KnownSocket] = []
    for count, pid in enumerate(pids):
        if count >= MAX_PROCESSES:
            break
        base = os.path.join(host_proc, str(pid))  # noqa: PTH118 (one join per process)
        try:
            name = read_capped(base + "/comm", 64).decode("utf-8", "replace").strip()
            flags = RUNTIME_FLAGS.get(name)
            if flags is None:
                continue
            argv = read_capped(base + "/cmdline", CMDLINE_CAP).split(b"\0")
        except OSError:
            continue
        for value in _flag_values([a.decode("utf-8", "replace") for a in argv], flags):
            path = value.removeprefix("unix://")
            if path.startswith("/") and all(k.node_path != path for k in found):
                api = "docker" if name == "dockerd" else "cri"
                known = next((k.where + ": " for k in KNOWN_SOCKETS if k.node_path == path), "")
                where = f"{known}{name} pid {pid}, its {flags[0]} flag"
                found.append(KnownSocket(path, where, api))
    return found


def _flag_values(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """``--flag value`` and ``--flag=value`` forms, as Go's flag and cobra parsers take them."""
    values: list[str] = []
    for i, arg in enumerate(argv):
        for flag in flags:
            if arg == flag and i + 1 < len(argv):
                values.append(argv[i + 1])
            elif arg.startswith(flag + "="):
                values.append(arg[len(flag) + 1 :])
    return values
