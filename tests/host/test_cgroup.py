"""The Agent's container-ID rule (pid_mapper.go) on real cgroup lines and this machine's cgroups.

The table holds ``/proc/<pid>/cgroup`` contents as each runtime and cgroup driver writes
them (the shapes the Agent's own tests and issue threads show). Each row says what the Agent
would conclude; a change to the rule that breaks one row changes which metrics get tagged.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from selfcheck.host.cgroup import (
    agent_cgroup_path,
    container_id_from_name,
    detect_layout,
    host_prefix,
    in_runtime_cgroup,
    is_runtime_path,
    last_element,
    parse_proc_cgroup,
    read_proc_cgroup,
)
from selfcheck.host.procfs import Mount
from tests.support.cgroup_rule import container_id_from_proc_cgroup


def _hex(seed: str, length: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


CID = _hex("container", 64)
POD_UID = "3b6f29b1-8d5c-4f0e-9a43-1c2d7e8f9a0b"
POD_UID_SYSTEMD = POD_UID.replace("-", "_")
ECS_TASK = _hex("task", 32)
ECS_ID = f"{ECS_TASK}-1234567890"
GARDEN = "8a3b2c1d-4e5f-4a6b-7c8d-9e0f"

V1_HOST = """12:hugetlb:/
11:pids:/
10:memory:/
9:cpu,cpuacct:/
1:name=systemd:/init.scope
0::/init.scope
"""


def v1(path: str, systemd: str | None = None) -> str:
    """A cgroup v1 (or hybrid) file with every controller at ``path``, as runc writes it."""
    return (
        f"12:hugetlb:{path}\n11:pids:{path}\n10:memory:{path}\n9:cpu,cpuacct:{path}\n"
        f"4:devices:{path}\n1:name=systemd:{systemd or path}\n0::{systemd or path}\n"
    )


def v2(path: str) -> str:
    return f"0::{path}\n"


K8S_SYSTEMD = (
    f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_SYSTEMD}.slice"
)
K8S_SYSTEMD_BE = (
    f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID_SYSTEMD}.slice"
)

# (name, /proc/<pid>/cgroup text, cgroup version the Agent detected, expected container ID)
TABLE = [
    # Docker, cgroupfs driver
    ("docker cgroupfs v1", v1(f"/docker/{CID}"), 1, CID),
    ("docker cgroupfs v2", v2(f"/docker/{CID}"), 2, CID),
    # Docker, systemd driver
    ("docker systemd v1", v1(f"/system.slice/docker-{CID}.scope"), 1, CID),
    ("docker systemd v2", v2(f"/system.slice/docker-{CID}.scope"), 2, CID),
    # containerd through the kubelet
    ("containerd cgroupfs v1", v1(f"/kubepods/besteffort/pod{POD_UID}/{CID}"), 1, CID),
    ("containerd cgroupfs v2", v2(f"/kubepods/burstable/pod{POD_UID}/{CID}"), 2, CID),
    ("containerd systemd v1", v1(f"{K8S_SYSTEMD}/cri-containerd-{CID}.scope"), 1, CID),
    ("containerd systemd v2", v2(f"{K8S_SYSTEMD_BE}/cri-containerd-{CID}.scope"), 2, CID),
    # CRI-O: the container resolves, its conmon monitor is deliberately ignored
    ("cri-o systemd v2", v2(f"{K8S_SYSTEMD}/crio-{CID}.scope"), 2, CID),
    ("cri-o cgroupfs v1", v1(f"/kubepods/burstable/pod{POD_UID}/crio-{CID}"), 1, CID),
    ("cri-o conmon v2", v2(f"{K8S_SYSTEMD}/crio-conmon-{CID}.scope"), 2, None),
    ("cri-o conmon v1", v1(f"/kubepods/burstable/pod{POD_UID}/crio-conmon-{CID}"), 1, None),
    # Podman
    ("podman v2", v2(f"/machine.slice/libpod-{CID}.scope"), 2, CID),
    # ECS: <32 hex>-<digits>, and the task level alone does not match
    ("ecs v1", v1(f"/ecs/{ECS_TASK}/{ECS_ID}"), 1, ECS_ID),
    ("ecs task level v1", v1(f"/ecs/{ECS_TASK}"), 1, None),
    # Garden (Cloud Foundry): 8-4-4-4-4, anchored at the end
    ("garden v1", v1(f"/garden/{GARDEN}"), 1, GARDEN),
    ("pod UID is not garden", v1(f"/garden/{POD_UID}"), 1, None),
    # systemd .mount units can carry an ID but hold no process
    (".mount v2", v2(f"/system.slice/var-lib-docker-overlay2-{CID}-merged.mount"), 2, None),
    (".mount v1", v1(f"/system.slice/run-containerd-{CID}-rootfs.mount"), 1, None),
    # pod-level cgroups have a UID, not a container ID
    ("pod only cgroupfs v1", v1(f"/kubepods/burstable/pod{POD_UID}"), 1, None),
    ("pod only systemd v2", v2(K8S_SYSTEMD), 2, None),
    # not a container at all
    ("root v2", "0::/\n", 2, None),
    ("host v1", V1_HOST, 1, None),
    ("systemd service v2", v2("/system.slice/containerd.service"), 2, None),
    # only the last element counts
    ("nested init.scope v2", v2(f"/docker/{CID}/init.scope"), 2, None),
    ("id then suffix element v1", v1(f"/docker/{CID}/sub"), 1, None),
    # a reader in a private cgroup namespace sees ../ paths; the last element still resolves
    (
        "private cgroupns view v2",
        v2(f"/../../{K8S_SYSTEMD[1:]}/cri-containerd-{CID}.scope"),
        2,
        CID,
    ),
    # the Agent reads exactly one line: memory on v1, the empty controller on v2
    ("hybrid read as v1", f"10:memory:/\n0::/docker/{CID}\n", 1, None),
    ("hybrid read as v2", f"10:memory:/\n0::/docker/{CID}\n", 2, CID),
    ("memory co-mounted v1", f"4:cpu,memory:/docker/{CID}\n0::/\n", 1, None),
    ("no memory line v1", f"1:name=systemd:/docker/{CID}\n2:cpu:/docker/{CID}\n", 1, None),
    ("first memory line wins", f"10:memory:/\n11:memory:/docker/{CID}\n", 1, None),
    # garbled input is data, never an exception
    ("uppercase hex", v2(f"/docker/{CID.upper()}"), 2, None),
    ("empty file", "", 2, None),
    ("binary junk", "\x00\xff::::\n\n:", 2, None),
    ("CRLF line end", f"0::/docker/{CID}\r\n", 2, CID),
]


@pytest.mark.parametrize(
    ("text", "version", "expected"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE]
)
def test_container_id_rule_on_real_cgroup_lines(
    text: str, version: int, expected: str | None
) -> None:
    assert container_id_from_proc_cgroup(text, version) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Go's \d is ASCII: an ECS task ID with Arabic-Indic digits is not an ID to the Agent.
        ("a" * 32 + "-\u0661\u0662", None),
        ("a" * 32 + "-12", "a" * 32 + "-12"),
        # Go's $ is the end of the text, not "before a trailing newline".
        ("12345678-1234-1234-1234-1234\n", None),
        ("12345678-1234-1234-1234-1234", "12345678-1234-1234-1234-1234"),
        # A pod UID (8-4-4-4-12) is not Garden's 8-4-4-4-4 at the end.
        (POD_UID, None),
        # Uppercase hex is not an ID for the Agent.
        ("A" * 64, None),
    ],
)
def test_go_regexp_semantics(name: str, expected: str | None) -> None:
    assert container_id_from_name(name) == expected


def test_leftmost_match_is_returned_from_a_decorated_name() -> None:
    assert container_id_from_name(f"cri-containerd-{CID}.scope") == CID
    assert container_id_from_name(f"docker-{CID}.scope") == CID
    assert container_id_from_name(f"pod{POD_UID}") is None
    assert container_id_from_name("") is None


@pytest.mark.parametrize(
    ("path", "base"),
    [("/", "."), ("", "."), ("/a/b/", "b"), ("a", "a"), ("//a//b", "b"), ("/../x", "x")],
)
def test_last_element_is_gos_base_of_the_trimmed_path(path: str, base: str) -> None:
    assert last_element(path) == base


def test_agent_line_selection_skips_named_and_other_controllers() -> None:
    lines = parse_proc_cgroup(v1("/a", systemd="/b"))
    assert agent_cgroup_path(lines, 1) == "/a"
    assert agent_cgroup_path(lines, 2) == "/b"
    assert agent_cgroup_path(parse_proc_cgroup("1:name=systemd:/x\n"), 1) is None


@pytest.mark.parametrize(
    ("path", "runtime"),
    [
        (f"/kubepods/besteffort/pod{POD_UID}", True),
        (K8S_SYSTEMD, True),
        (f"{K8S_SYSTEMD}/cri-containerd-{CID}.scope", True),
        (f"/docker/{CID}", True),
        (f"/system.slice/docker-{CID}.scope", True),
        (f"/machine.slice/libpod-{CID}.scope", True),
        (f"/ecs/{ECS_TASK}/{ECS_ID}", True),
        (f"/actions_job/{CID}", True),
        (f"/../../{K8S_SYSTEMD[1:]}/crio-{CID}.scope", True),
        (f"{K8S_SYSTEMD}/crio-conmon-{CID}.scope", False),
        (f"/system.slice/var-lib-docker-overlay2-{CID}-merged.mount", False),
        ("/system.slice/docker.service", False),
        ("/system.slice/containerd.service", False),
        ("/user.slice/user-1000.slice/session-3.scope", False),
        (f"/process_api/{_hex('x', 32)}", False),
        ("/", False),
    ],
)
def test_runtime_path_classifier(path: str, runtime: bool) -> None:
    assert is_runtime_path(path) is runtime


def test_runtime_classification_uses_every_hierarchy() -> None:
    """A v1 host without a memory line still shows its container processes as containers."""
    lines = parse_proc_cgroup(f"1:name=systemd:/docker/{CID}\n2:cpu:/docker/{CID}\n")
    assert in_runtime_cgroup(lines)
    assert container_id_from_proc_cgroup(f"1:name=systemd:/docker/{CID}\n", 1) is None


def test_reads_this_processes_real_cgroup_file() -> None:
    text = read_proc_cgroup(Path("/proc"), os.getpid())
    lines = parse_proc_cgroup(text)
    assert lines, text
    assert any(line.hierarchy == "0" or line.controllers for line in lines)


def test_vanished_process_raises_enoent() -> None:
    with pytest.raises(FileNotFoundError):
        read_proc_cgroup(Path("/proc"), 2**22 + 1)


def _mounts(*rows: tuple[str, str]) -> list[Mount]:
    return [
        Mount(i, 1, "/", point, frozenset({"ro"}), fstype, fstype, frozenset({"rw"}))
        for i, (point, fstype) in enumerate(rows, start=2)
    ]


H = "/host/sys/fs/cgroup"
LAYOUTS = [
    # Controllers come from the mount point's base name, split at commas.
    (
        [(f"{H}/cpu,cpuacct", "cgroup"), (f"{H}/memory", "cgroup")],
        "v1",
        {"cpu": f"{H}/cpu,cpuacct", "cpuacct": f"{H}/cpu,cpuacct", "memory": f"{H}/memory"},
        None,
    ),
    # One v1 controller alone is neither v1 (isCgroup1 wants more than one) nor v2.
    ([(f"{H}/memory", "cgroup")], "none", {"memory": f"{H}/memory"}, None),
    # Any cgroup2 mount under the prefix, with no v1 controller, is v2: the last one wins.
    ([(f"{H}/unified", "cgroup2")], "v2", {}, f"{H}/unified"),
    ([("/host/a", "cgroup2"), (H, "cgroup2")], "v2", {}, H),
    # v1 controllers and a cgroup2 mount: the Agent reads v1.
    (
        [(f"{H}/memory", "cgroup"), (f"{H}/pids", "cgroup"), (f"{H}/unified", "cgroup2")],
        "hybrid",
        {"memory": f"{H}/memory", "pids": f"{H}/pids"},
        f"{H}/unified",
    ),
    # The container's own cgroup mounts (not under /host) do not count.
    ([("/sys/fs/cgroup", "cgroup2"), (H, "tmpfs")], "none", {}, None),
]


@pytest.mark.parametrize(("rows", "version", "controllers", "v2"), LAYOUTS)
def test_layout_detection_is_reader_detector_go(
    rows: list[tuple[str, str]], version: str, controllers: dict[str, str], v2: str | None
) -> None:
    layout = detect_layout(_mounts(*rows), "/host")
    assert (layout.version, layout.v1_controllers, layout.v2_mount) == (version, controllers, v2)


def test_the_shortest_mount_point_wins_for_a_duplicated_controller() -> None:
    rows = [
        ("/host/sys/fs/cgroup/memory/../memory", "cgroup"),
        ("/host/sys/fs/cgroup/memory", "cgroup"),
        ("/host/sys/fs/cgroup/pids", "cgroup"),
    ]
    assert detect_layout(_mounts(*rows), "/host").v1_controllers["memory"] == (
        "/host/sys/fs/cgroup/memory"
    )


def test_host_prefix_is_the_agents_for_host_mounts_and_the_root_elsewhere() -> None:
    assert host_prefix("/host/sys/fs/cgroup") == "/host"
    assert host_prefix("/sys/fs/cgroup/") == "/sys/fs/cgroup"
