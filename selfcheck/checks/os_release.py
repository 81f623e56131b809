"""``os_release``: the host's ``/etc/os-release``, mounted read-only at ``/host/etc/os-release``.

The Agent reads it to report the node's operating system (host metadata, the ``os`` fields
in the infrastructure list); without the mount it reports the Agent image's own Debian.
"""

from __future__ import annotations

import shlex

from selfcheck.checks._common import Judge, not_replaced
from selfcheck.context import CheckContext
from selfcheck.host.files import read_whole_text
from selfcheck.model import Outcome, Reason, Status, ok
from selfcheck.registry import CheckSpec, register

CAP = 64 * 1024
FIELDS = ("ID", "VERSION_ID", "PRETTY_NAME")

REMEDIATIONS = {
    Reason.ENOENT: (
        "Mount the host's /etc/os-release read-only at /host/etc/os-release (the chart's "
        "os-release-file volume; Helm value datadog.osReleasePath, default /etc/os-release; "
        "the Operator's host-osrelease volume, mounted only with CWS), or point HOST_ETC at a "
        "mount of the host's /etc."
    ),
    Reason.EACCES: (
        "The file exists but this user cannot read it: os-release is world-readable on every "
        "distribution, so check the hostPath type (File) and that no "
        "securityContext.seLinuxOptions or AppArmor profile denies it."
    ),
    Reason.PARSE_ERROR: (
        "The mounted file is not an os-release file (os-release(5)): check that the "
        "os-release-file volume's hostPath is the host's /etc/os-release and not a directory "
        "or another file."
    ),
    Reason.IO_ERROR: (
        "Reading failed for another reason: the path must be a regular file (hostPath type "
        "File), under 64 KiB."
    ),
}
JUDGE = Judge(REMEDIATIONS)


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): ``KEY=value`` lines, values optionally shell-quoted; junk lines skipped."""
    fields: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep or not key.isidentifier():
            continue
        try:
            parts = shlex.split(raw)
        except ValueError:
            continue
        fields[key] = parts[0] if len(parts) == 1 else " ".join(parts)
    return fields


def run(ctx: CheckContext) -> Outcome:
    config = ctx.config
    path = config.os_release_path
    try:
        text = read_whole_text(ctx.host.at(path), CAP)
    except OSError as error:
        failure = JUDGE.failure(error, path, "read the host's os-release")
        return not_replaced(config, failure, error, "/etc/os-release (its image's)")
    fields = parse_os_release(text)
    if "ID" not in fields:
        return JUDGE.outcome(
            Status.FAILED,
            Reason.PARSE_ERROR,
            f"{path}: no ID= line in {len(text)} bytes; not an os-release file",
            details={"path": str(path), "bytes": len(text)},
        )
    name = fields.get("PRETTY_NAME") or fields["ID"]
    return ok(
        f"{path}: {name}",
        details={"path": str(path), **{k.lower(): fields[k] for k in FIELDS if k in fields}},
        node_info={"os_id": fields["ID"], "os_version_id": fields.get("VERSION_ID", "")},
    )


SPEC = register(
    CheckSpec(
        id="os_release",
        title="host operating system identity (os-release-file mount)",
        run=run,
        proves="the host's os-release file is readable and parses (ID, VERSION_ID, PRETTY_NAME).",
        why=(
            "The Agent reports the node's OS from /host/etc/os-release; without the mount it "
            "reports the OS of its own image, so inventories and OS-based monitors are wrong."
        ),
        remediations=REMEDIATIONS,
        required_because="optional by default (the chart mounts it, but nothing breaks without it)",
    )
)
