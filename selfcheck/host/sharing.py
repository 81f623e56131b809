"""Is a socket the Agent binds the node's file, the one application pods mount?

Applications reach the Agent's DogStatsD and APM sockets through a hostPath volume of the
node's ``/var/run/datadog`` (the chart's and the Operator's ``dsdsocket``). A socket bound in
a directory private to the Agent container answers the Agent's own sidecars and nobody else:
an ``emptyDir`` (the Operator's ``dsdsocket`` while UDS is off, GKE Autopilot without the CSI
driver: DataDog/datadog-operator internal/controller/datadogagent/feature/dogstatsd/feature.go),
a memory-backed ``emptyDir`` or the image's own root file system. The mount table of the
Agent container tells them apart: the mount holding the socket's directory is a bind of a
node directory (its ``root`` field is the directory's path in the node's file system), a
kubelet ``emptyDir`` (``.../kubernetes.io~empty-dir/...``), a fresh ``tmpfs`` (root ``/``)
or the container's root (mount point ``/``). This module only reads; the checks judge.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from selfcheck.host.procfs import Mount, mount_for

EMPTY_DIR = "kubernetes.io~empty-dir"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a socket lives: reachable by application pods or not, and the evidence."""

    shared: bool
    mount_point: str
    evidence: str

    def to_json(self) -> dict[str, object]:
        return {"shared": self.shared, "mount_point": self.mount_point, "evidence": self.evidence}


def placement(path: str, mounts: list[Mount]) -> Placement | None:
    """``path`` as the container names it (links resolved); ``None`` with no mount table."""
    mount = mount_for(Path(posixpath.dirname(path) or "/"), mounts)
    if mount is None:
        return None
    where = mount.mount_point
    if where == "/":
        return Placement(False, where, "in the container's own root file system (its image)")
    if EMPTY_DIR in mount.root:
        return Placement(False, where, f"in an emptyDir volume ({mount.root})")
    if mount.fstype == "tmpfs" and mount.root == "/":
        return Placement(False, where, "in a tmpfs of the container's own (a memory emptyDir)")
    return Placement(True, where, f"a bind of the node's {mount.root} ({mount.fstype})")
