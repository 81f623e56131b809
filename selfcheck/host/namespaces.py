"""Namespace identity readers: namespace inodes and how a procfs sees this process.

Whether two processes share a namespace is decided by the inode of ``/proc/<pid>/ns/<kind>``.
The kernel gives each initial namespace a fixed inode (include/linux/proc_ns.h), which is how
the Agent tells the host cgroup namespace apart (pkg/util/cgroups/namespace_linux.go). For
the PID namespace the inode alone is not enough: a node that is itself a container (a kind
cluster) has a non-initial PID namespace that is still the "host" one for the pods on it.
The ``NSpid`` line answers the real question: it lists this process's PID in every namespace
from the procfs's own down to this process's, so one entry means the same namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfcheck.host.procfs import int_fields, read_status

# include/linux/proc_ns.h: PROC_PID_INIT_INO and PROC_CGROUP_INIT_INO.
INITIAL_PID_NS_INODE = 0xEFFFFFFC
INITIAL_CGROUP_NS_INODE = 0xEFFFFFFB


def namespace_inode(kind: str, proc: Path = Path("/proc"), pid: int | str = "self") -> int:
    """The inode of ``<proc>/<pid>/ns/<kind>`` (``pid``, ``cgroup``...); raises ``OSError``."""
    return (Path(proc) / str(pid) / "ns" / kind).stat().st_ino


@dataclass(frozen=True, slots=True)
class PidView:
    """How one procfs sees a process: its ``Pid:`` there and its ``NSpid:`` chain.

    ``nspid`` is empty when the kernel predates the line (Linux 4.1) or the line is garbled.
    """

    pid: int | None
    nspid: tuple[int, ...]

    @property
    def levels(self) -> int:
        """1 when the procfs and the process share a PID namespace, more per level below."""
        return len(self.nspid)


def read_pid_view(proc_root: Path, pid: int | str = "self") -> PidView:
    """``<proc_root>/<pid>/status`` reduced to the PID facts.

    Reading ``self`` of a procfs whose PID namespace cannot see this process fails with
    ``ENOENT``: the kernel resolves ``self`` to PID 0 there, and that entry does not exist.
    """
    status = read_status(proc_root, pid)
    pids = int_fields(status.get("Pid"))
    return PidView(pids[0] if len(pids) == 1 else None, tuple(int_fields(status.get("NSpid"))))
