"""A real seccomp filter for tests: ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`` via ctypes.

No seccomp tool is packaged for this machine's Debian (util-linux 2.38's setpriv has no
``--seccomp-filter``; python3-seccomp does not reach a pyenv interpreter), so the launcher
loads a classic-BPF program itself and then ``exec``s the command; the filter survives
``exec``, as a runtime's RuntimeDefault profile does. The program allows every system call
except ``getpgid`` on x86-64, which fails with ``EPERM``: a test can prove the filter is
enforced, not only reported. Loading it without ``CAP_SYS_ADMIN`` needs no-new-privs first,
exactly as the kernel requires of an unprivileged container.
"""

from __future__ import annotations

import sys

_LAUNCHER = r"""
import ctypes, os, sys
class Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]
LD_ABS_W, JEQ_K, RET_K = 0x20, 0x15, 0x06
AUDIT_ARCH_X86_64, NR_GETPGID = 0xC000003E, 121
ALLOW, ERRNO_EPERM = 0x7FFF0000, 0x00050000 | 1
program = [
    (LD_ABS_W, 0, 0, 4),                    # seccomp_data.arch
    (JEQ_K, 0, 3, AUDIT_ARCH_X86_64),       # other architectures: allow all
    (LD_ABS_W, 0, 0, 0),                    # seccomp_data.nr
    (JEQ_K, 0, 1, NR_GETPGID),
    (RET_K, 0, 0, ERRNO_EPERM),
    (RET_K, 0, 0, ALLOW),
]
insns = (Filter * len(program))(*[Filter(*i) for i in program])
prog = Prog(len(program), insns)
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
    sys.exit("seccomp: prctl failed: " + os.strerror(ctypes.get_errno()))
os.execvp(sys.argv[1], sys.argv[1:])
"""


def with_seccomp(argv: list[str]) -> list[str]:
    """``argv`` run under the filter above."""
    return [sys.executable, "-c", _LAUNCHER, *argv]
