"""What ``origin_detection`` says: its fixes, its figures and the words for the clients."""

from __future__ import annotations

from selfcheck.checks import procfs
from selfcheck.checks._common import Judge
from selfcheck.model import Reason

INODE_CLIENTS = "clients that send their cgroup inode (datadog-go 5.x, datadogpy, Agent 7.51+)"
ID_CLIENTS = "clients that send their container ID (datadog-go, datadogpy, dd-trace, 7.35+)"
MECHANISMS = ("uds", "receipt", "client_inode", "client_container_id")

REMEDIATIONS = {
    Reason.PROCFS_MISSING: (
        "Mount the node's /proc read-only at /host/proc: the chart's procdir volume (hostPath "
        "/proc, mountPath /host/proc, readOnly: true). In a container the Agent registers its "
        "PID-to-container and inode-to-container lookups only when /host/proc exists; without "
        "it DogStatsD metrics go out without container tags and no error is counted."
    ),
    Reason.NOT_HOST_PID: (
        "Run the pod in the node's PID namespace: spec.hostPID: true (Helm value "
        "datadog.useHostPID, default true), and mount the node's /proc, not a pod's, at "
        "/host/proc (procdir volume, hostPath /proc). Without it the kernel gives the Agent PID "
        "0 for senders in other pods and it logs 'matched PID for the process is 0 ... Is the "
        "agent in host PID mode?'. Where hostPID is not allowed (GKE Autopilot), set "
        "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT=true so clients' cgroup inodes are used."
    ),
    Reason.PID_ZERO: (
        "The sender's PID did not reach the receiver: selfcheck's own SO_PASSCRED round trip "
        "carried none, or the Agent's dogstatsd-uds.OriginDetectionErrors grew with "
        "selfcheck's datagram. Run the Agent's pod with spec.hostPID: true "
        "(datadog.useHostPID); if it already is, look for a sandboxed runtime "
        "(spec.runtimeClassName such as gVisor or Kata) or a seccomp/LSM profile "
        "(securityContext.seccompProfile, AppArmor) that filters SCM_CREDENTIALS."
    ),
    Reason.NO_CONTAINER_ID: (
        "The Agent's rule (the memory line on cgroup v1 or the empty-controller line on v2, "
        "last path element, a 64-hex, ECS or Garden ID) finds no container ID: mount the node's "
        "/proc at /host/proc and the node's /sys/fs/cgroup at /host/sys/fs/cgroup (procdir and "
        "cgroups volumes, hostPath, readOnly); on cgroup v1 the memory controller must be "
        "mounted; containers in cgroups not named by their runtime's ID (a custom cgroup "
        "parent) can only be tagged by DD_ENTITY_ID (the admission controller)."
    ),
    Reason.INODE_UNRESOLVED: (
        "The Agent resolves a client's c:in-<inode> through a map of the container cgroups "
        "under its cgroup root: mount the node's /sys/fs/cgroup read-only at "
        "/host/sys/fs/cgroup (the chart's cgroups volume) and /proc at /host/proc (procdir); "
        "on cgroup v1 the memory controller must be mounted there. Containers whose cgroup "
        "directory is not named by their ID (a sub-cgroup, a custom parent) cannot be "
        "resolved by inode: use DD_ENTITY_ID (the admission controller)."
    ),
    Reason.NOT_RECEIVED: (
        "The Agent's expvar answers but its dogstatsd-uds.Packets did not grow after "
        "selfcheck's datagram: the socket selfcheck writes to is not the one the Agent reads. "
        "Mount the socket's directory, not the file (the chart's dsdsocket volume, hostPath "
        "/var/run/datadog; a file bind mount goes stale when the Agent recreates the socket), "
        "with the same DD_DOGSTATSD_SOCKET as the Agent, and restart the pod."
    ),
    Reason.EACCES: procfs.REMEDIATIONS[Reason.EACCES],
    Reason.TIMEOUT: (
        "A datagram sent to an SO_PASSCRED socket in this container did not arrive: the "
        "DogStatsD socket path cannot work either; check the container's seccomp profile "
        "(securityContext.seccompProfile) and the node's kernel log."
    ),
    Reason.IO_ERROR: (
        "Reading the host procfs or using a Unix socket failed unexpectedly: check the procdir "
        "volume (hostPath /proc at /host/proc) and the node's kernel log."
    ),
}
JUDGE = Judge(REMEDIATIONS)


FIGURES = {
    "resolution_ratio": (
        "uds: share of sampled host processes in pod or container cgroups that map to a "
        "container ID by the Agent's PID rule (absent when none were sampled)."
    ),
    "sampled_processes": "Host processes read for the resolution ratios.",
    "container_processes": "Sampled processes whose cgroup is under a runtime path.",
    "inode_resolution_ratio": (
        "client inode: share of sampled container processes whose client's cgroup inode "
        "resolves through the Agent's inode map (absent when none were sampled)."
    ),
    "client_id_recognised_ratio": (
        "client container ID: share of sampled container processes whose client finds an ID "
        "the Agent's container-ID rule recognises."
    ),
    "inode_map_containers": "Container cgroups in the Agent's inode map of the host tree.",
    "external_data_configured": "1 when DD_EXTERNAL_ENV is set in this container.",
    "entity_id_configured": "1 when DD_ENTITY_ID is set in this container.",
    **{
        f"mechanism_{name}_ok": (
            f"1 when the {name} origin-detection mechanism works on this node, 0 when it does "
            "not (absent when it was not judged)."
        )
        for name in MECHANISMS
    },
    **{
        f"mechanism_{name}_enabled": (
            f"1 when the Agent's configuration enables the {name} mechanism."
        )
        for name in MECHANISMS
    },
}
