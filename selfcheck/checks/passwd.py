"""``passwd``: user names for host processes, from ``$HOST_ETC/passwd`` or ``/etc/passwd``.

The Agent's process check names each process's user from this file
(pkg/process/checks/user_nix.go); the chart bind-mounts the host's ``/etc/passwd`` over the
container's only for a root Agent.
With the image's own passwd the Agent still runs, but host daemons show as bare UIDs. The
proof is therefore coverage: the share of sampled host processes whose UID has a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfcheck.checks._common import Judge
from selfcheck.context import CheckContext
from selfcheck.host.files import read_capped
from selfcheck.host.procfs import evenly_spaced, int_fields, read_status
from selfcheck.model import Outcome, Reason, Status, ok
from selfcheck.registry import CheckSpec, register

CAP = 4 * 1024 * 1024
MIN_COVERAGE = 0.9
SHOWN_UIDS = 10

REMEDIATIONS = {
    Reason.ENOENT: (
        "Mount the host's /etc/passwd read-only at /etc/passwd (the chart's passwd volume, "
        "added when the Agent runs as root), or mount the host's /etc and set HOST_ETC."
    ),
    Reason.EACCES: (
        "The passwd file is not readable by this user: it is world-readable on the host, so "
        "check the passwd volume (hostPath /etc/passwd, type File) and SELinux labels "
        "(securityContext.seLinuxOptions)."
    ),
    Reason.PARSE_ERROR: (
        "The file has no valid passwd(5) line: the passwd volume's hostPath must be the "
        "node's /etc/passwd."
    ),
    Reason.LOW_UID_COVERAGE: (
        "Many host processes run as UIDs this passwd does not name: it is probably the "
        "image's own /etc/passwd. Mount the host's /etc/passwd read-only at /etc/passwd "
        "(chart volume passwd) or set HOST_ETC to a mount of the host's /etc."
    ),
    Reason.TIMEOUT: (
        "Reading did not finish within SELFCHECK_CHECK_TIMEOUT: a read blocked in the kernel. "
        "Look for a hung mount behind the passwd volume (hostPath /etc/passwd) or the "
        "procdir volume "
        "and the node's kernel log (dmesg)."
    ),
    Reason.IO_ERROR: "Reading failed unexpectedly: the passwd volume must be a regular file.",
}
JUDGE = Judge(REMEDIATIONS)


@dataclass(frozen=True, slots=True)
class Passwd:
    names: dict[int, str]
    bad_lines: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class Coverage:
    sampled: int
    resolved: int
    unresolved_uids: list[int]

    @property
    def ratio(self) -> float:
        return self.resolved / self.sampled if self.sampled else 1.0


def parse_passwd(data: bytes, truncated: bool = False) -> Passwd:
    """passwd(5) lines ``name:pw:uid:gid:gecos:home:shell``; a bad line is counted, not fatal."""
    names: dict[int, str] = {}
    bad = 0
    lines = data.decode("utf-8", errors="replace").splitlines()
    if truncated and lines:
        lines = lines[:-1]
    for line in lines:
        if not line.strip() or line.startswith(("#", "+", "-")):
            continue
        fields = line.split(":")
        if len(fields) != 7 or not fields[0] or not (fields[2].isascii() and fields[2].isdigit()):
            bad += 1
            continue
        names.setdefault(int(fields[2]), fields[0])
    return Passwd(names, bad, truncated)


def sample_uids(proc: Path, pids: list[int], limit: int) -> list[int]:
    """Real UIDs of an evenly spread sample of host processes; vanished ones are skipped."""
    uids: list[int] = []
    for pid in evenly_spaced(pids, limit):
        try:
            fields = int_fields(read_status(proc, pid, ("Uid",)).get("Uid"))
        except OSError:
            continue
        if fields:
            uids.append(fields[0])
    return uids


def coverage(uids: list[int], passwd: Passwd) -> Coverage:
    resolved = sum(1 for uid in uids if uid in passwd.names)
    missing = sorted({uid for uid in uids if uid not in passwd.names})
    return Coverage(len(uids), resolved, missing[:SHOWN_UIDS])


def _read(path: Path) -> Passwd:
    data = read_capped(path, CAP + 1)
    return parse_passwd(data[:CAP], truncated=len(data) > CAP)


def run(ctx: CheckContext) -> Outcome:
    config = ctx.config
    path = config.passwd_path
    try:
        passwd = _read(ctx.host.at(path))
    except OSError as error:
        return JUDGE.failure(error, path, "read passwd")
    details: dict[str, object] = {
        "path": str(path),
        "entries": len(passwd.names),
        "malformed_lines": passwd.bad_lines,
        "truncated_at_bytes": CAP if passwd.truncated else None,
    }
    if not passwd.names:
        return JUDGE.outcome(
            Status.FAILED,
            Reason.PARSE_ERROR,
            f"{path}: no valid passwd line ({passwd.bad_lines} malformed)",
            details=details,
        )
    pids = ctx.host.host_pids()
    proc = ctx.host.host_proc
    uids = [] if isinstance(pids, OSError) else sample_uids(proc, pids, config.sample_size)
    cov = coverage(uids, passwd)
    details.update(
        sampled_processes=cov.sampled,
        resolved_processes=cov.resolved,
        unresolved_uids=cov.unresolved_uids,
        host_proc=str(config.host_proc),
    )
    figures = {"uid_resolution_ratio": round(cov.ratio, 4), "entries": len(passwd.names)}
    if cov.sampled == 0:
        return ok(
            f"{path}: {len(passwd.names)} users; no host process readable to measure coverage "
            "(see the procfs check)",
            details=details,
            figures=figures,
        )
    summary = (
        f"{cov.resolved} of {cov.sampled} sampled host processes ({cov.ratio:.0%}) have a user name"
    )
    if cov.ratio < MIN_COVERAGE:
        shown = ", ".join(str(u) for u in cov.unresolved_uids)
        return JUDGE.outcome(
            Status.DEGRADED,
            Reason.LOW_UID_COVERAGE,
            f"{path}: only {summary}; UIDs without a name: {shown}",
            details=details,
            figures=figures,
        )
    return ok(f"{path}: {summary}", details=details, figures=figures)


SPEC = register(
    CheckSpec(
        id="passwd",
        title="user names of host processes (passwd mount)",
        run=run,
        proves=(
            "the passwd file parses, and the UIDs of a bounded, evenly spread sample of host "
            f"processes resolve to names (at least {MIN_COVERAGE:.0%} of them)."
        ),
        why=(
            "The Agent's process check names users from $HOST_ETC/passwd or /etc/passwd; with "
            "the image's own file, host processes are listed with bare UIDs."
        ),
        remediations=REMEDIATIONS,
        required_by_default=lambda config: config.running_as_root,
        required_because="required when running as root (the chart mounts passwd only then)",
        figures={
            "uid_resolution_ratio": "Share of sampled host processes whose UID has a user name.",
            "entries": "Users in the passwd file.",
        },
    )
)
