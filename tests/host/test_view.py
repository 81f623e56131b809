"""``HostView``'s cgroup tree: walked once per cycle, reused across cycles, walked on a miss."""

from __future__ import annotations

from pathlib import Path

from selfcheck.host.cgroup import CgroupLayout, CgroupTree
from selfcheck.host.view import HostView, TreeCache


class _FixtureView(HostView):
    """A view whose cgroup hierarchy is a fixture directory (the layout is not read)."""

    def __init__(self, top: Path, trees: TreeCache) -> None:
        super().__init__(Path("/proc"), top, trees=trees)
        self._top = top

    def cgroup_layout(self) -> CgroupLayout:
        return CgroupLayout("v1", {"memory": str(self._top)}, None)


def _names(tree: CgroupTree | OSError) -> set[str]:
    assert isinstance(tree, CgroupTree)
    return {d.name for d in tree.dirs}


def test_the_next_cycle_reuses_the_walk_and_a_miss_walks_again(tmp_path: Path) -> None:
    (tmp_path / "kubepods" / ("a" * 64)).mkdir(parents=True)
    cache = TreeCache()
    first = _FixtureView(tmp_path, cache).cgroup_tree()
    (tmp_path / "kubepods" / ("b" * 64)).mkdir()
    second_view = _FixtureView(tmp_path, cache)
    second = second_view.cgroup_tree()
    assert second is first  # no walk: the new container is not in it yet
    assert "b" * 64 not in _names(second)
    fresh = second_view.refresh_cgroup_tree()
    assert fresh is not first and "b" * 64 in _names(fresh)
    assert second_view.refresh_cgroup_tree() is fresh  # at most one walk per cycle
    assert _FixtureView(tmp_path, cache).cgroup_tree() is fresh  # the next cycle reuses it


def test_an_old_walk_is_not_reused(tmp_path: Path) -> None:
    cache = TreeCache(max_age=0.0)
    first = _FixtureView(tmp_path, cache).cgroup_tree()
    assert _FixtureView(tmp_path, cache).cgroup_tree() is not first


def test_a_fresh_walk_is_its_own_refresh(tmp_path: Path) -> None:
    view = _FixtureView(tmp_path, TreeCache())
    tree = view.cgroup_tree()
    assert view.refresh_cgroup_tree() is tree
