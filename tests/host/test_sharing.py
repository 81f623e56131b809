"""Where a socket lives, from the container's mount table: the node's directory or its own."""

from __future__ import annotations

from selfcheck.host.procfs import parse_mountinfo
from selfcheck.host.sharing import placement

# Lines as the kernel writes them for a chart-like Agent container (mountinfo(5) fields).
MOUNTINFO = """\
1 0 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
2 1 0:24 /datadog /var/run/datadog rw,nosuid,nodev - tmpfs tmpfs rw,mode=755
3 1 8:1 /var/lib/kubelet/pods/0c/volumes/kubernetes.io~empty-dir/apm /var/run/apm rw - ext4 x rw
4 1 0:77 / /var/run/memory rw - tmpfs tmpfs rw,size=65536k
5 1 8:1 /srv/sockets /var/run/node rw - ext4 /dev/sda1 rw
"""


def _where(path: str) -> tuple[bool, str] | None:
    found = placement(path, parse_mountinfo(MOUNTINFO))
    return None if found is None else (found.shared, found.mount_point)


def test_a_bind_of_the_nodes_directory_is_shared() -> None:
    assert _where("/var/run/datadog/dsd.socket") == (True, "/var/run/datadog")
    assert _where("/var/run/node/apm.socket") == (True, "/var/run/node")


def test_an_empty_dir_a_tmpfs_of_its_own_or_the_image_are_not() -> None:
    assert _where("/var/run/apm/apm.socket") == (False, "/var/run/apm")
    assert _where("/var/run/memory/dsd.socket") == (False, "/var/run/memory")
    assert _where("/tmp/dsd.socket") == (False, "/")


def test_the_evidence_names_the_node_path_or_the_volume() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    shared = placement("/var/run/datadog/dsd.socket", mounts)
    private = placement("/var/run/apm/apm.socket", mounts)
    assert shared is not None and shared.evidence == "a bind of the node's /datadog (tmpfs)"
    assert private is not None and "kubernetes.io~empty-dir/apm" in private.evidence


def test_no_mount_table_is_no_verdict() -> None:
    assert placement("/var/run/datadog/dsd.socket", []) is None
