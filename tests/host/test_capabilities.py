"""Capability decoding: fixture status lines for every bit, and real processes' sets.

Names are checked against libcap's own decoder (``capsh --decode``, Debian's libcap2-bin) for
every bit it knows, and bits newer than any kernel (41-63) must still be reported by number.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfcheck.host.capabilities import (
    CAP_BITS,
    CAPABILITY_NAMES,
    cap_bit,
    cap_name,
    decode,
    mask_of,
    parse_capability_sets,
    parse_mask,
)
from selfcheck.host.procfs import parse_status

CAPSH = shutil.which("capsh") or "/usr/sbin/capsh"


def status_text(**sets: str) -> str:
    """A status file shaped like the kernel's, with the capability lines given."""
    lines = ["Name:\tagent", "Uid:\t0\t0\t0\t0", "NoNewPrivs:\t0", "Seccomp:\t0"]
    lines += [f"{name}:\t{value}" for name, value in sets.items()]
    return "\n".join(lines) + "\n"


def capsh_names(mask: int) -> list[str]:
    out = subprocess.run(
        [CAPSH, f"--decode={mask:#x}"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()
    return out.split("=", 1)[1].split(",")


def test_table_matches_libcap_for_every_bit_it_knows() -> None:
    libcap = capsh_names((1 << len(CAPABILITY_NAMES)) - 1)
    assert [name.upper() for name in libcap] == list(CAPABILITY_NAMES)


@pytest.mark.parametrize("bit", range(CAP_BITS))
def test_each_bit_decodes_from_a_status_line(bit: int) -> None:
    text = status_text(CapEff=f"{1 << bit:016x}", CapBnd=f"{1 << bit:016x}")
    sets = parse_capability_sets(parse_status(text))
    expected = CAPABILITY_NAMES[bit] if bit < len(CAPABILITY_NAMES) else f"CAP_{bit}"
    assert sets.named()["CapEff"] == [expected]
    assert sets.named()["CapBnd"] == [expected]
    assert sets.named()["CapPrm"] == []


def test_bits_newer_than_the_running_kernel_are_named_by_number() -> None:
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for bit in range(last_cap + 1, CAP_BITS):
        known = bit < len(CAPABILITY_NAMES)
        assert decode(1 << bit) == (CAPABILITY_NAMES[bit] if known else f"CAP_{bit}",)
    assert decode(1 << 63) == ("CAP_63",)


def test_full_mask_names_all_sixty_four_bits() -> None:
    sets = parse_capability_sets(parse_status(status_text(CapBnd="ffffffffffffffff")))
    bounding = sets.named()["CapBnd"]
    assert len(bounding) == 64
    assert bounding[:41] == list(CAPABILITY_NAMES)
    assert bounding[41:] == [f"CAP_{b}" for b in range(41, 64)]


def test_missing_and_garbled_fields_read_as_empty_and_are_reported() -> None:
    text = status_text(CapEff="zz", CapPrm="1" * 17, CapBnd="000001ffffffffff")
    sets = parse_capability_sets(parse_status(text))
    assert sets.effective == 0 and sets.permitted == 0
    assert sets.garbled == ("CapInh", "CapPrm", "CapEff", "CapAmb")
    assert len(sets.named()["CapBnd"]) == 41


@given(st.integers(min_value=0, max_value=(1 << CAP_BITS) - 1))
def test_decode_and_mask_of_round_trip(mask: int) -> None:
    assert mask_of(decode(mask)) == mask
    assert parse_mask(f"{mask:016x}") == mask


def test_spellings_of_kubernetes_kernel_and_libcap() -> None:
    assert cap_bit("SYS_PTRACE") == cap_bit("CAP_SYS_PTRACE") == cap_bit("cap_sys_ptrace") == 19
    assert cap_name(21) == "CAP_SYS_ADMIN"
    assert cap_bit("CAP_50") == 50
    with pytest.raises(ValueError, match="unknown capability"):
        cap_bit("SYS_EVERYTHING")


def _status_of(*setpriv_args: str) -> dict[str, str]:
    """The status of a real process started by setpriv with the given privileges."""
    out = subprocess.run(
        ["setpriv", *setpriv_args, "cat", "/proc/self/status"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return parse_status(out)


@pytest.mark.root
def test_reduced_bounding_set_of_a_real_process() -> None:
    status = _status_of("--inh-caps=-all", "--bounding-set=-all,+chown,+kill,+net_bind_service")
    named = parse_capability_sets(status).named()
    expected = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert named["CapBnd"] == expected
    assert named["CapEff"] == expected  # root regains its bounding set at exec
    assert named["CapAmb"] == []


@pytest.mark.root
def test_ambient_capability_of_a_real_non_root_process() -> None:
    status = _status_of(
        "--reuid=100",
        "--regid=101",
        "--clear-groups",
        "--inh-caps=+sys_ptrace",
        "--ambient-caps=+sys_ptrace",
    )
    named = parse_capability_sets(status).named()
    assert named["CapAmb"] == ["CAP_SYS_PTRACE"]
    assert named["CapEff"] == ["CAP_SYS_PTRACE"]
    assert "CAP_SYS_ADMIN" in named["CapBnd"]
