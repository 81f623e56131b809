"""This process's own identity and confinement, as the kernel reports them.

The sidecar runs with the Agent container's securityContext, so what ``/proc/self/status``
says about it (UIDs, capability sets, ``NoNewPrivs``, ``Seccomp``) is what the Agent holds.
It is read from this container's own procfs, never from ``/host/proc``: the question is what
*this* process may do, not what a host process may.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from selfcheck.host.capabilities import CapabilitySets, parse_capability_sets
from selfcheck.host.procfs import Mount, int_fields, mount_for, read_status
from selfcheck.host.root import Root

SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}


@dataclass(frozen=True, slots=True)
class Identity:
    """``uid``/``no_new_privs``/``seccomp`` are ``None`` when the status file lacks the line
    (kernels older than 4.10 have no ``NoNewPrivs``); the judge then makes no claim."""

    uid: int | None
    gid: int | None
    groups: tuple[int, ...]
    capabilities: CapabilitySets
    no_new_privs: int | None
    seccomp: int | None

    @property
    def seccomp_mode(self) -> str:
        if self.seccomp is None:
            return "unknown"
        return SECCOMP_MODES.get(self.seccomp, str(self.seccomp))


def _first_int(value: str | None) -> int | None:
    numbers = int_fields(value)
    return numbers[0] if numbers else None


def _effective_id(value: str | None) -> int | None:
    """``Uid:``/``Gid:`` list real, effective, saved and filesystem IDs; the effective one acts."""
    numbers = int_fields(value)
    return numbers[1] if len(numbers) >= 2 else None


def identity_from_status(status: dict[str, str]) -> Identity:
    return Identity(
        uid=_effective_id(status.get("Uid")),
        gid=_effective_id(status.get("Gid")),
        groups=tuple(int_fields(status.get("Groups"))),
        capabilities=parse_capability_sets(status),
        no_new_privs=_first_int(status.get("NoNewPrivs")),
        seccomp=_first_int(status.get("Seccomp")),
    )


def read_identity(proc: Path = Path("/proc"), pid: int | str = "self") -> Identity:
    """Raises ``OSError`` when the status file cannot be read."""
    return identity_from_status(read_status(proc, pid))


def mount_writable(mount: Mount) -> bool:
    """Writable only when both the mount and its superblock are read-write."""
    return not mount.read_only and "ro" not in mount.super_options


def own_mount(path: Path, mounts: list[Mount], root: Root | None = None) -> Mount | None:
    """The mount whose mount point *is* ``path`` (symlinks resolved), else ``None``.

    ``mounts`` is one container's table and ``root`` that container's root: the path is
    resolved inside it (the Agent's image may link ``/var/run`` to ``/run`` where selfcheck's
    does not), selfcheck's own by default. A path that merely lives on some larger file system
    (``/etc/passwd`` on a bare machine's root) is not a volume of its own, so it is not
    audited as one.
    """
    real = os.path.realpath(path) if root is None or root.is_own else root.resolve(path)
    mount = mount_for(Path(real), mounts)
    if mount is None or os.path.normpath(mount.mount_point) != real:
        return None
    return mount


def submounts(mount: Mount, mounts: list[Mount]) -> list[Mount]:
    """Mounts stacked below ``mount`` (a recursive bind carries them along, each with its own
    read-only flag: ``readOnly: true`` on a volume does not reach them before Kubernetes'
    ``recursiveReadOnly``)."""
    prefix = mount.mount_point.rstrip("/") + "/"
    return [m for m in mounts if m is not mount and m.mount_point.startswith(prefix)]
