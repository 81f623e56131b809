"""``Root``: paths resolved inside another container's root, as the kernel does for it.

A fixture directory stands for ``/proc/<pid>/root``: its absolute symlinks must resolve inside
it, never against the test's own root (where the same paths exist, with other contents).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from selfcheck.checks import os_release
from selfcheck.config import load
from selfcheck.context import CheckContext
from selfcheck.host.eyes import own_eyes
from selfcheck.host.root import Root, in_root, pinned
from selfcheck.host.view import HostView
from selfcheck.model import Status
from selfcheck.registry import known_ids


def _agent_root(tmp_path: Path) -> Path:
    """An Agent image's shape: ``/etc/os-release -> /usr/lib/os-release`` (absolute, as some
    images ship it), with an os-release that differs from this machine's."""
    root = tmp_path / "agent-root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text('ID=agentimage\nPRETTY_NAME="Agent image 1"\n')
    (root / "host/etc").mkdir(parents=True)
    (root / "host/etc/os-release").symlink_to("/usr/lib/os-release")
    return root


def test_an_absolute_link_resolves_inside_the_root(tmp_path: Path) -> None:
    root = Root(_agent_root(tmp_path))
    assert root.resolve("/host/etc/os-release") == "/usr/lib/os-release"
    assert root.at("/host/etc/os-release") == tmp_path / "agent-root/usr/lib/os-release"
    assert Path("/usr/lib/os-release").exists()  # the test's own file, which must not be read


def test_dotdot_never_climbs_above_the_root(tmp_path: Path) -> None:
    base = _agent_root(tmp_path)
    (base / "escape").symlink_to("../../../../../../etc")
    assert Root(base).resolve("/escape/passwd") == "/etc/passwd"
    assert Root(base).at("/escape/passwd") == base / "etc/passwd"


def test_a_missing_component_keeps_the_rest_so_the_open_fails_the_same(tmp_path: Path) -> None:
    root = Root(_agent_root(tmp_path))
    assert root.resolve("/var/run/datadog/dsd.socket") == "/var/run/datadog/dsd.socket"
    assert not root.at("/var/run/datadog/dsd.socket").exists()


def test_a_link_loop_is_eloop(tmp_path: Path) -> None:
    base = _agent_root(tmp_path)
    (base / "a").symlink_to("/b")
    (base / "b").symlink_to("/a")
    with pytest.raises(OSError) as raised:
        Root(base).resolve("/a/x")
    assert raised.value.errno == errno.ELOOP


def test_inside_is_the_containers_name_for_an_opened_path(tmp_path: Path) -> None:
    root = Root(_agent_root(tmp_path))
    assert root.inside(root.at("/host/etc/os-release")) == "/usr/lib/os-release"
    assert root.inside(root.base) == "/"
    assert Root().inside("/x/y") == "/x/y"


def test_own_root_leaves_paths_to_the_kernel() -> None:
    assert Root().resolve("/proc/self/../1") == "/proc/1"
    assert Root().at("/host/proc") == Path("/host/proc")


def test_os_release_reads_the_agents_file_not_its_own(tmp_path: Path) -> None:
    """The check names the Agent's path and reads the Agent image's file."""
    config = load(known_ids(), {"HOST_ETC": "/host/etc"})
    eyes = own_eyes("fixture").__class__(
        "agent",
        Root(_agent_root(tmp_path)),
        Path("/proc"),
        "self",
        "fixture",
        own_eyes("").credentials,
    )
    context = CheckContext.of(config, HostView(config.host_proc, config.cgroup_root, eyes))
    outcome = os_release.run(context)
    assert outcome.status is Status.OK
    assert outcome.message == "/host/etc/os-release: Agent image 1"
    assert outcome.node_info["os_id"] == "agentimage"


def test_a_pinned_root_resolves_with_openat2_inside_it(tmp_path: Path) -> None:
    """The kernel's ``RESOLVE_IN_ROOT`` answers (not the walk): absolute links and ``..``
    stay inside, and the name comes back as the container's own."""
    base = _agent_root(tmp_path)
    (base / "escape").symlink_to("../../../../../../etc")
    (base / "etc").mkdir()
    (base / "etc/passwd").write_text("dd-agent:x:100:101::/opt/datadog-agent:/bin/false\n")
    root = pinned(base)
    assert root.handle is not None
    assert in_root(root.handle.fd, "/host/etc/os-release") == "/usr/lib/os-release"
    assert in_root(root.handle.fd, "/escape/passwd") == "/etc/passwd"
    assert in_root(root.handle.fd, "/escape/../host/etc/os-release") == "/usr/lib/os-release"
    assert in_root(root.handle.fd, "/missing/x") is None  # the walk keeps the rest
    assert root.resolve("/missing/x") == "/missing/x"
    assert root.at("/host/etc/os-release").read_text().startswith("ID=agentimage")


def test_a_pinned_root_keeps_the_directory_it_opened(tmp_path: Path) -> None:
    """Another directory put where the first was (a restarted container's new root at the
    same path) is not the pinned root: every later access still reads the first."""
    base = _agent_root(tmp_path)
    root = pinned(base)
    base.rename(tmp_path / "gone")
    other = _agent_root(tmp_path)
    (other / "usr/lib/os-release").write_text("ID=impostor\n")
    assert root.at("/host/etc/os-release").read_text().startswith("ID=agentimage")
    assert Root(base).at("/host/etc/os-release").read_text() == "ID=impostor\n"


def test_a_pinned_descriptor_is_closed_when_nothing_holds_the_root(tmp_path: Path) -> None:
    root = pinned(_agent_root(tmp_path))
    assert root.handle is not None
    fd = root.handle.fd
    assert os.readlink(f"/proc/self/fd/{fd}") == str(tmp_path / "agent-root")
    del root
    assert not Path(f"/proc/self/fd/{fd}").exists()
