"""The Agent's inode map, on this machine's real cgroup hierarchy and on plain trees.

Real: container-named cgroups are made in the hierarchy the Agent walks (memory on v1 and
hybrid, the unified mount on v2), and the map must give each one's own ``stat`` inode, the
one a client in that cgroup's private namespace sends. Plain directories show the walk's
order (a later directory with the same ID wins, as in the Agent) and its caps.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.host.cgroup import detect_layout
from selfcheck.host.inodes import agent_hierarchy, build_inode_map, inode_map_from_dirs
from selfcheck.host.procfs import read_mountinfo
from tests.support.hosttree import host_tree

A = "a" * 64
B = "b" * 64


def _hierarchy() -> Path:
    found = agent_hierarchy(detect_layout(read_mountinfo(), "/sys/fs/cgroup"))
    if found is None:
        pytest.skip("no cgroup hierarchy the Agent walks under /sys/fs/cgroup")
    return Path(found)


@pytest.fixture
def real_containers() -> Iterator[tuple[Path, list[Path]]]:
    top = _hierarchy() / f"selfcheck-inodes-{secrets.token_hex(4)}"
    leaves = [top / f"docker-{A}.scope", top / "pod" / B, top / "pod" / "not-a-container"]
    for leaf in leaves:
        leaf.mkdir(parents=True)
    try:
        yield top, leaves
    finally:
        for leaf in leaves:
            leaf.rmdir()
        (top / "pod").rmdir()
        top.rmdir()


@pytest.mark.root
def test_real_cgroups_map_to_their_own_inodes(real_containers: tuple[Path, list[Path]]) -> None:
    top, leaves = real_containers
    found = build_inode_map(str(_hierarchy()))
    assert found.by_inode[os.stat(leaves[0]).st_ino] == A
    assert found.by_inode[os.stat(leaves[1]).st_ino] == B
    assert os.stat(leaves[2]).st_ino not in found.by_inode
    assert os.stat(top).st_ino not in found.by_inode
    assert found.dirs_walked >= 4
    assert not found.truncated


def _tree(root: Path, *paths: str) -> Path:
    return host_tree(root, dict.fromkeys(paths))


def test_a_later_directory_with_the_same_id_wins(tmp_path: Path) -> None:
    root = _tree(tmp_path, f"a/{A}", f"b/docker-{A}.scope", f"b/{A}.mount", "c/crio-conmon-" + A)
    found = build_inode_map(str(root))
    assert found.by_id == {A: os.stat(root / "b" / f"docker-{A}.scope").st_ino}
    assert found.containers == 1


def test_the_walk_is_capped_in_size_and_depth(tmp_path: Path) -> None:
    root = _tree(tmp_path, *(f"n{i}/{i:064x}" for i in range(10)), "d1/d2/d3/d4/" + B)
    assert build_inode_map(str(root)).containers == 11
    small = build_inode_map(str(root), max_dirs=5)
    assert small.truncated and small.dirs_walked == 5 and small.containers < 11
    shallow = build_inode_map(str(root), max_depth=3)
    assert shallow.truncated and B not in shallow.by_id


def test_an_absent_hierarchy_is_an_empty_map(tmp_path: Path) -> None:
    found = build_inode_map(str(tmp_path / "absent"))
    assert (found.containers, found.unreadable, found.dirs_walked) == (0, 1, 0)


def test_a_shared_tree_read_gives_the_same_map(tmp_path: Path) -> None:
    """The lead's once-per-cycle tree (any order, inodes from getdents) feeds the same rule."""
    root = _tree(tmp_path, f"z/{A}", f"a/docker-{A}.scope", f"m/{B}/x", "m/pod")
    listed: list[tuple[str, str, int]] = []
    for path, names, _files in os.walk(root):
        for name in names:
            full = Path(path) / name
            listed.append(("/" + str(full.relative_to(root)), name, os.stat(full).st_ino))
    walked = build_inode_map(str(root))
    shared = inode_map_from_dirs(str(root), reversed(listed), walked=len(listed), truncated=False)
    assert shared.by_id == walked.by_id
    assert shared.by_inode == walked.by_inode
    assert walked.by_id[A] == os.stat(root / "z" / A).st_ino  # "z" comes after "a"
