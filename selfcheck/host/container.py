"""Whether this process runs in a container, decided from evidence that survives every shape.

It matters because in a container ``/proc``, ``/sys/fs/cgroup`` and ``/etc/os-release`` are the
container's own: a missing ``/host`` mount must then be reported, never silently replaced
(docs/architecture.md). One signal alone is not enough on today's nodes:

1. the Agent's own rule (``DOCKER_DD_AGENT``, set by its image; pkg/config/env
   ``IsContainerized``), and ``KUBERNETES_SERVICE_HOST``, which the kubelet gives every pod;
2. the ``container`` variable (systemd-nspawn, Podman, LXC);
3. this process's cgroup lies under a runtime path (``kubepods``, ``docker``,
   ``cri-containerd-``...): what ``ctr run`` and a bare CRI give, with no marker at all;
4. in a private cgroup namespace the cgroup reads ``/``, so the last signal is the root file
   system: an ``overlay`` root is how every OCI runtime assembles an image.

A bare machine, even inside ``unshare --cgroup``, shows none of them and keeps checking itself.
Marker files (``/.dockerenv``, ``/run/.containerenv``) are not trusted: a machine image built
from a container image keeps them (the test machine has a ``/.dockerenv`` on an ext4 root).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from selfcheck.host.cgroup import in_runtime_cgroup, parse_proc_cgroup
from selfcheck.host.files import read_text
from selfcheck.host.procfs import read_mountinfo

_ENV_SIGNALS = ("DOCKER_DD_AGENT", "KUBERNETES_SERVICE_HOST", "container")
_IMAGE_ROOT_FSTYPES = frozenset({"overlay", "aufs", "fuse-overlayfs"})


def detect_container(env: Mapping[str, str], proc: Path = Path("/proc")) -> tuple[bool, str]:
    """``(True, why)`` in a container, ``(False, "")`` on a bare machine."""
    for name in _ENV_SIGNALS:
        if env.get(name):
            return True, f"{name} is set"
    try:
        lines = parse_proc_cgroup(read_text(proc / "self" / "cgroup", 64 * 1024))
    except OSError:
        lines = []
    if in_runtime_cgroup(lines):
        return True, "this process's cgroup is under a container runtime's path"
    return _root_filesystem(proc)


def _root_filesystem(proc: Path) -> tuple[bool, str]:
    try:
        mounts = read_mountinfo(proc)
    except OSError:
        return False, ""
    roots = [m for m in mounts if m.mount_point == "/"]
    if roots and roots[-1].fstype in _IMAGE_ROOT_FSTYPES:
        return True, f"the root file system is {roots[-1].fstype}, an image's"
    return False, ""
