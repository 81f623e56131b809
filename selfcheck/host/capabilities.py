"""Capability sets from ``/proc/<pid>/status``, decoded to names.

The kernel prints each set (``CapInh``, ``CapPrm``, ``CapEff``, ``CapBnd``, ``CapAmb``) as a
64-bit hex mask. Names come from a fixed table (``linux/capability.h``), not from the running
kernel: the audit must name a bit the same way on every node, and a status line may carry bits
the running kernel does not know yet (a newer kernel's ``CapBnd`` read through ``/host/proc``, or
a fixture); such a bit is named ``CAP_<n>`` rather than dropped, so nothing held goes unreported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CAPABILITY_NAMES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
"""Index = bit number, as in ``linux/capability.h`` (CAP_CHECKPOINT_RESTORE, 40, is the last)."""

CAP_BITS = 64
SET_FIELDS: tuple[str, ...] = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")

_BIT_BY_NAME = {name: bit for bit, name in enumerate(CAPABILITY_NAMES)}


def cap_name(bit: int) -> str:
    """The kernel's name for a bit; ``CAP_<n>`` for a bit newer than this table."""
    if 0 <= bit < len(CAPABILITY_NAMES):
        return CAPABILITY_NAMES[bit]
    return f"CAP_{bit}"


def cap_bit(name: str) -> int:
    """Bit number of ``CAP_X``, ``X`` or ``cap_x`` (the Kubernetes, kernel and libcap spellings)."""
    upper = name.upper()
    key = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if key in _BIT_BY_NAME:
        return _BIT_BY_NAME[key]
    suffix = key.removeprefix("CAP_")
    if suffix.isdigit() and int(suffix) < CAP_BITS:
        return int(suffix)
    raise ValueError(f"unknown capability {name!r}")


def mask_of(names: Iterable[str]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << cap_bit(name)
    return mask


def decode(mask: int) -> tuple[str, ...]:
    """Names of every set bit, lowest bit first."""
    return tuple(cap_name(bit) for bit in range(CAP_BITS) if mask >> bit & 1)


_HEX_DIGITS = "0123456789abcdefABCDEF"


def parse_mask(value: str | None) -> int | None:
    """A status hex mask, or ``None`` when absent or garbled (never an exception)."""
    if value is None:
        return None
    text = value.strip()
    # int(..., 16) also takes "-1" (every bit set), "+f", "0x1f" and "f_f": none is a mask
    # the kernel writes, and "-1" would over-report privileges from a garbled file.
    if not text or len(text) > CAP_BITS // 4 or text.strip(_HEX_DIGITS):
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class CapabilitySets:
    """The five sets of one process; a set the status file lacks or garbles reads as 0."""

    inheritable: int = 0
    permitted: int = 0
    effective: int = 0
    bounding: int = 0
    ambient: int = 0
    garbled: tuple[str, ...] = ()

    def named(self) -> dict[str, list[str]]:
        """``{"CapEff": ["CAP_CHOWN", ...], ...}``, the shape details and ``--verbose`` show."""
        return {
            "CapEff": list(decode(self.effective)),
            "CapPrm": list(decode(self.permitted)),
            "CapBnd": list(decode(self.bounding)),
            "CapAmb": list(decode(self.ambient)),
            "CapInh": list(decode(self.inheritable)),
        }


def parse_capability_sets(status: Mapping[str, str]) -> CapabilitySets:
    """The sets from a parsed ``status`` (``selfcheck.host.procfs.parse_status``).

    A missing or unparsable field is listed in ``garbled`` and counts as empty, so a damaged
    file can only under-report privileges, and the judge can say so.
    """
    values: dict[str, int] = {}
    garbled: list[str] = []
    for field in SET_FIELDS:
        mask = parse_mask(status.get(field))
        if mask is None:
            garbled.append(field)
        values[field] = mask or 0
    return CapabilitySets(
        inheritable=values["CapInh"],
        permitted=values["CapPrm"],
        effective=values["CapEff"],
        bounding=values["CapBnd"],
        ambient=values["CapAmb"],
        garbled=tuple(garbled),
    )
