"""The ``origin_detection`` check: its spec, and a run that gathers then judges."""

from __future__ import annotations

from selfcheck.checks.origin_detection import evidence
from selfcheck.checks.origin_detection.evidence import (
    EXPVAR_BUDGET,
    PASSCRED_BUDGET,
    gather,
)
from selfcheck.checks.origin_detection.judges import (
    NOT_ENABLED_WORDS,
    UDP_NOT_ENABLED_WORDS,
    judge,
)
from selfcheck.checks.origin_detection.texts import FIGURES, JUDGE, REMEDIATIONS
from selfcheck.config import UDP, Config
from selfcheck.context import CheckContext
from selfcheck.host.files import describe, path_exists
from selfcheck.host.view import HostView
from selfcheck.model import Outcome, Reason, Status
from selfcheck.registry import CheckSpec, register


def _procfs_missing(config: Config, host: HostView) -> Outcome | None:
    """``/host/proc`` where the Agent wants it, and a procfs (it has ``self``) at ``host_proc``."""
    self_link = host.host_proc / "self"
    if config.containerized and not path_exists(host.at(evidence.AGENT_HOST_PROC)):
        where = f"{evidence.AGENT_HOST_PROC} does not exist (the procdir mount is missing)"
    else:
        try:
            self_link.lstat()
        except (FileNotFoundError, NotADirectoryError) as error:
            where = f"{config.host_proc} is not a mounted procfs ({describe(error, self_link)})"
        except OSError as error:
            return JUDGE.failure(error, self_link, "look at the host procfs")
        else:
            return None
    lost = {"status": "failed", "reason": "procfs_missing", "enabled": True}
    return JUDGE.outcome(
        Status.FAILED,
        Reason.PROCFS_MISSING,
        f"{where}: the Agent registers no PID-to-container and no inode-to-container lookup, "
        "so UDS origin detection and clients that send their cgroup inode are untagged, "
        "without any error",
        details={
            "host_proc": str(config.host_proc),
            "containerized": config.containerized,
            "mechanisms": {
                "uds": {**lost, "enabled": config.origin_detection},
                "client_inode": {**lost, "enabled": config.origin_detection_client},
            },
        },
        figures={
            "mechanism_uds_ok": 0.0,
            "mechanism_uds_enabled": float(config.origin_detection),
            "mechanism_client_inode_ok": 0.0,
            "mechanism_client_inode_enabled": float(config.origin_detection_client),
            "mechanism_client_container_id_enabled": float(config.origin_detection_client),
        },
    )


def run(ctx: CheckContext) -> Outcome:
    config = ctx.config
    missing = _procfs_missing(config, ctx.host)
    if missing is not None:
        return missing
    # The round trip may take half of what the runner's deadline leaves, the receipt a quarter.
    evidence = gather(
        config,
        ctx.host,
        passcred_budget=ctx.budget(PASSCRED_BUDGET, 0.5),
        receipt_budget=ctx.budget(EXPVAR_BUDGET, 0.25),
    )
    return judge(evidence)


def _required(config: Config) -> bool:
    """Over UDP only the client mechanisms can tag, so they must be on as well."""
    if config.dogstatsd_transport == UDP:
        return config.origin_detection and config.origin_detection_client
    return config.origin_detection


def _unused(config: Config) -> str:
    if config.dogstatsd_transport == UDP and not config.origin_detection_client:
        return UDP_NOT_ENABLED_WORDS
    return "" if config.origin_detection or config.origin_detection_client else NOT_ENABLED_WORDS


SPEC = register(
    CheckSpec(
        id="origin_detection",
        title="Origin detection: UDS credentials, client inode and ID, the Agent's receipt",
        run=run,
        proves=(
            "Each mechanism on its own line of details, for the Agent's process in its view "
            "(selfcheck's own otherwise). uds, Step 1: it shares the PID namespace /host/proc "
            "belongs to (NSpid in <host proc>/<pid>/status has one entry). Step 2: a datagram "
            "from a child process to an SO_PASSCRED socket in the abstract namespace arrives "
            "with the child's non-zero PID. Step 3: its "
            "<host proc>/<pid>/cgroup maps to its container ID by the Agent's exact rule "
            "(memory line on v1, empty controller on v2, last path element, the Agent's regex, "
            ".mount and crio-conmon- excluded); a private cgroup namespace is noted, not "
            "failed. Step 4: the same rule maps an evenly spaced sample (SELFCHECK_SAMPLE, "
            "default 256) of host processes in container cgroups. client_inode: for those "
            "processes, the inode their client sends from a private cgroup namespace (the "
            "datadog-go and datadogpy rule) resolves through the Agent's inode map of the host "
            "cgroup tree (the memory hierarchy on v1, the unified one on v2, container-named "
            "directories only, bounded walk). client_container_id: the ID their client finds "
            "(cgroup, then mountinfo) is one the Agent recognises. external_data, entity_id: "
            "reported as configured, not provable without the kubelet. receipt: where the "
            "Agent's expvar answers (DD_EXPVAR_PORT, else 5000, then 6000), dogstatsd-uds "
            "Packets grows after selfcheck's datagram and OriginDetectionErrors does not."
        ),
        why=(
            "The Agent tags each DogStatsD packet with its sender's container by these paths "
            "and every one fails silently: PID 0 is accepted untagged (only an expvar counter "
            "moves), a missing /host/proc disables the PID and inode lookups without any "
            "error, and an unmatched cgroup or inode is not counted at all."
        ),
        remediations=REMEDIATIONS,
        required_by_default=_required,
        unused=_unused,
        required_because=(
            "required: DD_DOGSTATSD_ORIGIN_DETECTION is true (over UDP, with "
            "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT: only client-sent origins work there)"
        ),
        figures=FIGURES,
    )
)
