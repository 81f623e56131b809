"""``pod_logs``: container logs under ``/var/log/pods`` (the chart's logpodpath, read-only).

The Agent tails every container's log file from here when logs are enabled. The files are
root-owned on the node, so a non-root Agent lists the directory and then fails to open
every file (DataDog/datadog-agent#6442): listing alone proves nothing, opening one does.
"""

from __future__ import annotations

import os
from pathlib import Path

from selfcheck.checks._common import Judge
from selfcheck.context import CheckContext
from selfcheck.host.files import read_capped
from selfcheck.model import Outcome, Reason, Status, ok
from selfcheck.registry import CheckSpec, register

MAX_ENTRIES = 2_000

REMEDIATIONS = {
    Reason.ENOENT: (
        "Mount the node's /var/log/pods read-only at /var/log/pods (the chart's logpodpath "
        "volume, added when datadog.logs.enabled is true), and /var/log/containers "
        "(logscontainerspath) beside it."
    ),
    Reason.EACCES: (
        "Pod log files are root-owned on the node: run the Agent as root "
        "(securityContext.runAsUser: 0, the chart default) or grant read access to its group "
        "through securityContext.supplementalGroups (see DataDog/datadog-agent#6442)."
    ),
    Reason.NO_LOG_FILE: (
        "The directory is not the node's /var/log/pods, or the node writes logs elsewhere: "
        "the logpodpath volume must be hostPath /var/log/pods (type Directory, not "
        "DirectoryOrCreate on a node that keeps logs elsewhere) and the kubelet's "
        "podLogsDir must be that path."
    ),
    Reason.TIMEOUT: (
        "Reading did not finish within SELFCHECK_CHECK_TIMEOUT: a read blocked in the kernel. "
        "Look for a hung mount behind the logpodpath volume (hostPath /var/log/pods); a "
        "network file system under /var/log is the usual cause "
        "and the node's kernel log (dmesg)."
    ),
    Reason.IO_ERROR: "Reading pod logs failed unexpectedly: check the logpodpath volume.",
}
JUDGE = Judge(REMEDIATIONS)


def find_log_file(root: Path) -> tuple[Path | None, int]:
    """The first ``*.log`` under ``<pod>/<container>/``, and how many pod directories there are."""
    pods = sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False))
    seen = 0
    for pod in pods:
        try:
            containers = list(os.scandir(root / pod))
        except OSError:
            continue
        for container in containers:
            seen += 1
            if seen > MAX_ENTRIES:
                return None, len(pods)
            if not container.is_dir(follow_symlinks=False):
                continue
            try:
                logs = [e for e in os.scandir(container.path) if e.name.endswith(".log")]
            except OSError:
                continue
            if logs:
                return Path(logs[0].path), len(pods)
    return None, len(pods)


def _no_pod_directories(containerized: bool) -> str:
    """Only a pod has its own logs under the directory; a bare machine need not have any."""
    if containerized:
        return "no pod directories at all, although this pod's own logs would be there"
    return "no pod directories at all (a node running pods has one per pod)"


def run(ctx: CheckContext) -> Outcome:
    """What the Agent's log tailer would meet under the pod log directory (with logs off, the
    runner makes it the would-be verdict of a ``not_enabled`` skip)."""
    config = ctx.config
    root, opened = config.pod_logs_dir, ctx.host.at(config.pod_logs_dir)
    try:
        log_file, pods = find_log_file(opened)
    except OSError as error:
        return JUDGE.failure(error, root, "list pod logs")
    details: dict[str, object] = {"path": str(root), "pods": pods}
    if log_file is None:
        why = (
            f"{pods} pod directories listed but no container log found to open "
            f"(looked at up to {MAX_ENTRIES} container directories)"
            if pods
            else _no_pod_directories(config.containerized)
        )
        return JUDGE.outcome(
            Status.DEGRADED,
            Reason.NO_LOG_FILE,
            f"{root}: {why}",
            details=details,
        )
    try:
        read_capped(log_file, 1)
    except OSError as error:
        shown = ctx.host.root.inside(log_file)
        return JUDGE.failure(error, shown, "open a pod log", details=details)
    return ok(
        f"{root}: {pods} pods, opened {log_file.relative_to(opened)} for reading", details=details
    )


SPEC = register(
    CheckSpec(
        id="pod_logs",
        title="container log files (logpodpath mount at /var/log/pods)",
        run=run,
        proves=(
            "the pod log directory lists and one container log file opens for reading as this user."
        ),
        why=(
            "With logs enabled the Agent tails /var/log/pods/*/*/*.log; if it can list but not "
            "open them it ships no logs and reports no error in its health."
        ),
        remediations=REMEDIATIONS,
        required_by_default=lambda config: config.logs_enabled,
        unused=lambda config: (
            "" if config.logs_enabled else "log collection is off (DD_LOGS_ENABLED is not true)"
        ),
        required_because="required when DD_LOGS_ENABLED is true; skipped otherwise",
    )
)
