"""Writes a synthetic host procfs tree: ``python bench/proctree.py DIR COUNT``.

The tree has the shape the checks read from ``HOST_PROC``: ``<pid>/status`` (a real
kernel's layout, about 1.4 KB, with ``Name``, ``Uid``, ``NSpid``...), ``<pid>/cgroup`` (a
cgroup v1 node's 13 lines, or one ``0::`` line for v2), ``self`` pointing at one of the
processes, PID 1 ``systemd`` and PID 2 ``kthreadd`` as in the initial PID namespace, and
``sys/kernel/osrelease``. About 70 % of the processes sit in pod cgroups whose last path
element is a 64-hex container ID (resolvable by the Agent's rule), 5 % in pod cgroups the
rule cannot resolve (a custom cgroup parent), the rest in ``system.slice`` units; UIDs are
spread over 0, 100 and a few users passwd will not name. PIDs are spread with gaps, like
a long-running node's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from pathlib import Path

STATUS = """Name:\t{name}
Umask:\t0022
State:\tS (sleeping)
Tgid:\t{pid}
Ngid:\t0
Pid:\t{pid}
PPid:\t{ppid}
TracerPid:\t0
Uid:\t{uid}\t{uid}\t{uid}\t{uid}
Gid:\t{uid}\t{uid}\t{uid}\t{uid}
FDSize:\t64
Groups:\t{uid}
NStgid:\t{pid}
NSpid:\t{pid}
NSpgid:\t{pid}
NSsid:\t{pid}
Kthread:\t0
VmPeak:\t  724220 kB
VmSize:\t  723132 kB
VmLck:\t       0 kB
VmPin:\t       0 kB
VmHWM:\t   36104 kB
VmRSS:\t   35840 kB
RssAnon:\t   14456 kB
RssFile:\t   21384 kB
RssShmem:\t       0 kB
VmData:\t   62860 kB
VmStk:\t     132 kB
VmExe:\t    2788 kB
VmLib:\t    9820 kB
VmPTE:\t     180 kB
VmSwap:\t       0 kB
HugetlbPages:\t       0 kB
CoreDumping:\t0
THP_enabled:\t1
untag_mask:\t0xffffffffffffffff
Threads:\t9
SigQ:\t0/96364
SigPnd:\t0000000000000000
ShdPnd:\t0000000000000000
SigBlk:\t0000000000000000
SigIgn:\t0000000001001000
SigCgt:\t0000000180004ecf
CapInh:\t0000000000000000
CapPrm:\t0000000000000000
CapEff:\t0000000000000000
CapBnd:\t000001ffffffffff
CapAmb:\t0000000000000000
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t1
Speculation_Store_Bypass:\tthread force mitigated
SpeculationIndirectBranch:\tconditional force disabled
Cpus_allowed:\t3
Cpus_allowed_list:\t0-1
Mems_allowed:\t00000000,00000001
Mems_allowed_list:\t0
voluntary_ctxt_switches:\t1234
nonvoluntary_ctxt_switches:\t56
"""

V1_CONTROLLERS = (
    "12:rdma",
    "11:pids",
    "10:hugetlb",
    "9:net_cls,net_prio",
    "8:perf_event",
    "7:blkio",
    "6:freezer",
    "5:devices",
    "4:memory",
    "3:cpuset",
    "2:cpu,cpuacct",
    "1:name=systemd",
)
UIDS = (0, 0, 0, 100, 100, 65534, 1000, 4242)
NAMES = ("containerd-shim", "nginx", "python3", "java", "sshd", "kubelet", "pause", "agent")


def container_id(pid: int) -> str:
    return hashlib.sha256(str(pid).encode()).hexdigest()


def cgroup_path(pid: int) -> str:
    """Pod containers mostly, some unresolvable pod cgroups, and system services."""
    slot = pid % 20
    # The pod follows from the container (two containers a pod), so no container ID sits
    # under two pods: the Agent's inode map keeps only the last directory of an ID.
    pod = f"/kubepods/burstable/pod{container_id(pid // 6)[:8]}-0000-4000-8000-000000000000"
    if slot < 14:
        return f"{pod}/{container_id(pid // 3)}"
    if slot == 14:
        return f"{pod}/custom-parent-{pid // 3}"
    return f"/system.slice/unit{pid % 40}.service"


def cgroup_text(pid: int, version: int) -> str:
    path = cgroup_path(pid)
    if version == 2:
        return f"0::{path}\n"
    return "".join(f"{c}:{path}\n" for c in V1_CONTROLLERS) + f"0::{path}\n"


def pids_for(count: int) -> list[int]:
    """``count`` PIDs from 3 upwards with gaps, plus 1 and 2."""
    return [1, 2, *(3 + i + i // 3 for i in range(count - 2))]


def write_process(root: Path, pid: int, name: str, uid: int, cgroup_version: int) -> None:
    directory = root / str(pid)
    directory.mkdir()
    ppid = 0 if pid <= 2 else 1
    status = STATUS.format(name=name, pid=pid, ppid=ppid, uid=uid)
    (directory / "status").write_text(status)
    (directory / "cgroup").write_text(cgroup_text(pid, cgroup_version))


def generate(root: Path, count: int, cgroup_version: int = 1) -> Path:
    """Write ``count`` processes under ``root`` (created, must not exist); returns ``root``."""
    root.mkdir(parents=True)
    pids = pids_for(max(count, 3))
    for i, pid in enumerate(pids):
        if pid == 1:
            name, uid = "systemd", 0
        elif pid == 2:
            name, uid = "kthreadd", 0
        else:
            name, uid = NAMES[i % len(NAMES)], UIDS[i % len(UIDS)]
        write_process(root, pid, name, uid, cgroup_version)
    own = pids[len(pids) // 2]
    os.symlink(str(own), root / "self")
    kernel = root / "sys" / "kernel"
    kernel.mkdir(parents=True)
    (kernel / "osrelease").write_text(os.uname().release + "\n")
    return root


AGENT_POD = "/kubepods/besteffort/pod0a0b0c0d-0000-4000-8000-000000000000"


def _own_capabilities(status: str) -> str:
    """``status`` with this process's capability sets, no-new-privs and seccomp mode: an
    Agent with other sets than the reader's is looked at through a helper (the exact eyes),
    and the cycle measured here is the one that runs in this process."""
    own = Path("/proc/self/status").read_text()
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"):
        line = re.search(rf"^{key}:.*$", own, flags=re.M)
        if line is not None:
            status = re.sub(rf"^{key}:.*$", line.group(0), status, flags=re.M)
    return status


def add_agent(root: Path, env: dict[str, str], cgroups: Path | None = None) -> int:
    """The Agent's core process (``agent run``) in the tree, as this process's identity, and
    its container cgroup in the synthetic cgroup tree ``cgroups`` (listing it, as a node's).

    Its ``root`` is a link to ``/``, its identity, capability sets and mount table this
    process's, so a cycle looks through the Agent's eyes at this machine, in this process:
    every path is walked inside that root and the allow-listed settings are read from its
    ``environ``, as on a node.
    """
    pid = max(int(p.name) for p in root.iterdir() if p.name.isdigit()) + 1
    directory = root / str(pid)
    directory.mkdir()
    groups = " ".join(str(g) for g in os.getgroups())
    uid, gid = os.geteuid(), os.getegid()
    status = STATUS.format(name="agent", pid=pid, ppid=1, uid=uid)
    status = re.sub(r"^Gid:.*$", f"Gid:\t{gid}\t{gid}\t{gid}\t{gid}", status, flags=re.M)
    status = re.sub(r"^Groups:.*$", f"Groups:\t{groups}", status, flags=re.M)
    status = _own_capabilities(status)
    (directory / "status").write_text(status)
    (directory / "cmdline").write_bytes(b"agent\0run\0")
    fields = ["S", "1", *["0"] * 17, "4242", *["0"] * 30]
    (directory / "stat").write_text(f"{pid} (agent) {' '.join(fields)}\n")
    (directory / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in env.items()))
    (directory / "mountinfo").write_bytes(Path("/proc/self/mountinfo").read_bytes())
    lines = "".join(f"{c}:{AGENT_POD}/{container_id(pid)}\n" for c in V1_CONTROLLERS)
    (directory / "cgroup").write_text(lines + f"0::{AGENT_POD}/{container_id(pid)}\n")
    (directory / "ns").mkdir()
    for kind in ("net", "pid", "cgroup"):
        os.symlink(f"/proc/self/ns/{kind}", directory / "ns" / kind)
    os.symlink("/", directory / "root")
    if cgroups is not None:
        own = cgroups / AGENT_POD.lstrip("/") / container_id(pid)
        own.mkdir(parents=True)
        (own / "cgroup.procs").write_text(f"{pid}\n")
    return pid


def main() -> None:
    """Parse ``DIR COUNT`` and write the tree."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("count", type=int)
    args = parser.parse_args()
    generate(args.directory, args.count)
    print(f"wrote {args.count} processes under {args.directory}")


if __name__ == "__main__":
    main()
