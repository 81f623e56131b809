"""procfs readers: mountinfo, status and sampling, on real and hostile input."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from selfcheck.host.procfs import (
    evenly_spaced,
    int_fields,
    list_pids,
    mount_for,
    parse_mountinfo,
    parse_mountinfo_line,
    parse_status,
    read_mountinfo,
)

LINE = (
    "36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext3 /dev/root "
    "rw,errors=continue"
)


def test_mountinfo_line_with_escapes_and_optional_fields() -> None:
    mount = parse_mountinfo_line(LINE)
    assert mount is not None
    assert mount.mount_point == "/mnt with space"
    assert mount.root == "/mnt1"
    assert mount.fstype == "ext3" and mount.source == "/dev/root"
    assert "noatime" in mount.options and not mount.read_only
    assert "errors=continue" in mount.super_options


def test_real_mountinfo_has_proc_and_resolves_paths() -> None:
    mounts = read_mountinfo()
    proc = mount_for(Path("/proc/self/status"), mounts)
    assert proc is not None and proc.fstype == "proc"
    root = mount_for(Path("/"), mounts)
    assert root is not None and root.mount_point == "/"


def test_the_last_mount_on_a_path_wins() -> None:
    text = "1 0 0:1 / / rw - ext4 a rw\n2 1 0:2 / /x rw - tmpfs b rw\n3 2 0:3 / /x ro - proc c rw\n"
    mount = mount_for(Path("/x/y"), parse_mountinfo(text))
    assert mount is not None and mount.fstype == "proc" and mount.read_only


def test_status_and_integer_fields() -> None:
    fields = parse_status("Name:\tbash\nUid:\t0\t0\t0\t0\nNSpid:\t12\t1\ngarbage\n")
    assert fields["Name"] == "bash"
    assert int_fields(fields["Uid"]) == [0, 0, 0, 0]
    assert int_fields(fields["NSpid"]) == [12, 1]
    assert int_fields("1 x") == [] and int_fields(None) == []


def test_real_pids_and_bounded_even_sample() -> None:
    pids = list_pids(Path("/proc"))
    assert 1 in pids and pids == sorted(pids)
    items = list(range(1000))
    sample = evenly_spaced(items, 10)
    assert len(sample) == 10 and sample[0] == 0 and sample[-1] >= 900
    assert evenly_spaced([1, 2], 10) == [1, 2]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_parsers_never_raise(text: str) -> None:
    parse_mountinfo(text)
    parse_status(text)
    int_fields(text)


def test_the_start_time_is_field_22_and_empty_once_the_process_has_exited() -> None:
    """One reader for every place that pins a process (eyes, node-Agent choice, the helper)."""
    import subprocess
    import time

    from selfcheck.host.procfs import read_start_time

    child = subprocess.Popen(["sleep", "600"])
    try:
        started = read_start_time(Path("/proc"), child.pid)
        assert started.isdigit() and int(started) > 0
        child.kill()
        for _ in range(2000):  # a zombie until reaped: its state is Z
            if read_start_time(Path("/proc"), child.pid) == "":
                break
            time.sleep(0.005)
        assert read_start_time(Path("/proc"), child.pid) == ""
    finally:
        child.kill()
        child.wait()
