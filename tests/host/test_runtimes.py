"""The bounded search for the distributions' runtime sockets (selfcheck/host/runtimes.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.host import runtimes
from selfcheck.host.root import Root
from selfcheck.host.sockets import Deadline
from tests.support.daemons import (
    CONTAINERD_READY_TIMEOUT,
    ContainerdDaemon,
    _require,
    short_dir,
)
from tests.support.hosttree import proc_tree


def test_run_and_var_run_are_one_directory() -> None:
    assert runtimes.aliases("/var/run/crio/crio.sock") == (
        "/var/run/crio/crio.sock",
        "/run/crio/crio.sock",
    )
    assert runtimes.canonical("/var/run/crio/crio.sock") == "/run/crio/crio.sock"
    assert runtimes.canonical("/var/snap/x.sock") == "/var/snap/x.sock"


def test_a_node_path_is_reached_through_each_mount_holding_it() -> None:
    dirs = [runtimes.NodeDir("/host/var/run", "/var/run"), runtimes.NodeDir("/host/run", "/run")]
    assert runtimes.agent_paths("/run/k3s/containerd/containerd.sock", dirs) == [
        "/host/var/run/k3s/containerd/containerd.sock",
        "/host/run/k3s/containerd/containerd.sock",
    ]
    assert runtimes.agent_paths("/var/snap/microk8s/common/run/containerd.sock", dirs) == []


def test_the_substring_rule_of_the_agent() -> None:
    assert runtimes.cri_runtime("/host/run/k3s/containerd/containerd.sock") == "containerd"
    assert runtimes.cri_runtime("/host/var/run/crio/crio.sock") == "cri-o"
    assert runtimes.cri_runtime("/host/run/dockershim.sock") == "cri"


def test_runtime_flags_in_both_forms_and_only_from_runtimes(tmp_path: Path) -> None:
    proc_tree(
        tmp_path,
        {
            10: {"comm": "containerd\n", "cmdline": "containerd\0-a\0/run/k3s/c.sock\0"},
            11: {"comm": "crio\n", "cmdline": "crio\0--listen=/var/run/crio/crio.sock\0"},
            12: {"comm": "dockerd\n", "cmdline": "dockerd\0-H\0unix:///run/d.sock\0-H\0tcp://x\0"},
            13: {"comm": "bash\n", "cmdline": "bash\0--address\0/run/not.sock\0"},
        },
    )
    found = runtimes.runtime_addresses(tmp_path, [10, 11, 12, 13, 99])
    assert [(k.node_path, k.api) for k in found] == [
        ("/run/k3s/c.sock", "cri"),
        ("/var/run/crio/crio.sock", "cri"),
        ("/run/d.sock", "docker"),
    ]
    assert found[1].where.startswith("crio pid 11, its --listen flag")


def test_the_process_scan_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc_tree(
        tmp_path, {n: {"comm": "containerd\n", "cmdline": f"c\0-a\0/run/{n}\0"} for n in (1, 2)}
    )
    monkeypatch.setattr(runtimes, "MAX_PROCESSES", 1)
    assert [k.node_path for k in runtimes.runtime_addresses(tmp_path, [1, 2])] == ["/run/1"]


def test_search_probes_only_what_is_there(tmp_path: Path) -> None:
    """A listening socket answers; a stale one is named with its reason; a missing one is not
    a sighting; a path the Agent already tried is skipped; a spent budget stops the search."""
    run = tmp_path / "host/var/run"
    (run / "crio").mkdir(parents=True)
    (run / "k3s/containerd").mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as live, socket.socket(socket.AF_UNIX) as stale:
        live.bind(str(run / "k3s/containerd/containerd.sock"))
        live.listen(1)
        stale.bind(str(run / "crio/crio.sock"))
        sightings = runtimes.search(Root(tmp_path), [], None)
        skipped = runtimes.search(
            Root(tmp_path), [], None, skip=["/host/var/run/k3s/containerd/containerd.sock"]
        )
        spent = runtimes.search(Root(tmp_path), [], None, deadline=Deadline(0))
    assert [(s.node_path, s.result) for s in sightings] == [
        ("/run/k3s/containerd/containerd.sock", "ok"),
        ("/run/crio/crio.sock", "econnrefused"),
    ]
    assert [s.node_path for s in skipped] == ["/run/crio/crio.sock"]
    assert spent == []  # the check's budget spent: the search stops, it never overruns


@pytest.fixture
def flagged_containerd() -> Iterator[ContainerdDaemon]:
    """A real containerd told its socket by ``--address``, as k3s, RKE2 and microk8s start it."""
    _require("containerd")
    directory = short_dir("flagged")
    daemon = ContainerdDaemon(
        "containerd", directory, directory / "k3s/containerd/containerd.sock", directory / "log"
    )
    config = directory / "config.toml"
    directory.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'version = 2\nroot = "{directory / "root"}"\nstate = "{directory / "state"}"\n'
        '[metrics]\n  address = ""\n'
    )
    daemon.start(["containerd", "--config", str(config), "--address", str(daemon.socket)])
    try:
        daemon.wait_ready(daemon.socket.exists, CONTAINERD_READY_TIMEOUT)
        yield daemon
    finally:
        daemon.stop()
        daemon.cleanup()


@pytest.mark.containerd
def test_a_real_runtimes_address_flag_names_its_socket(
    flagged_containerd: ContainerdDaemon,
) -> None:
    """Read from the real /proc: the daemon's name and its ``--address``, then the socket it
    names probed where this process sees it (outside a container the node's own paths)."""
    assert flagged_containerd.process is not None
    pid = flagged_containerd.process.pid
    found = runtimes.runtime_addresses("/proc", [pid])
    assert [(k.node_path, k.api) for k in found] == [(str(flagged_containerd.socket), "cri")]
    assert found[0].where == f"containerd pid {pid}, its --address flag"
    sightings = runtimes.search(Root(), [], "/proc", [pid], containerized=False)
    assert [(s.node_path, s.result) for s in sightings] == [(str(flagged_containerd.socket), "ok")]
