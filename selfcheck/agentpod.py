"""The Agent pod's contract: what selfcheck expects of the Datadog Agent's DaemonSet pod.

One table each for the pod's host volumes, the Agent's ``DD_*`` settings selfcheck reads, the
Agent's container roles and selfcheck's two modes. The checks, the audit, ``agent_container``,
``lint``, the configuration and the remediation texts read them here, so they cannot disagree.

Sources: the Helm chart (DataDog/helm-charts charts/datadog/templates/
_daemonset-volumes-linux.yaml, _container-agent.yaml, values.yaml), the Operator
(DataDog/datadog-operator internal/controller/datadogagent/common/const.go), the Agent
(DataDog/datadog-agent pkg/config/setup/config.go for defaults, pkg/config/setup/fixup_init.go
for the ``/host`` paths, comp/agent/expvarserver for the expvar port).
"""

from __future__ import annotations

from dataclasses import dataclass

SIDECAR, NODE = "sidecar", "node"
MODES = (SIDECAR, NODE)
"""``sidecar``: a container of the Agent's pod. ``node``: a DaemonSet of its own beside the
Agent pod (the only form for Operator installs, whose pod takes no extra container)."""

CORE, TRACE, PROCESS, SYSTEM_PROBE = "agent", "trace-agent", "process-agent", "system-probe"
ROLES = (CORE, TRACE, PROCESS, SYSTEM_PROBE)
"""Closed set: the Agent's processes, one per container of the chart's pod."""


@dataclass(frozen=True, slots=True)
class Volume:
    """One host volume of the Agent's pod, as the chart renders it."""

    name: str
    mount_path: str
    node_path: str
    read_only: bool
    needed_by: str
    """Which features need it, in words (``explain``, remediations)."""

    def fix(self) -> str:
        """The volume as a remediation names it: ``procdir volume (hostPath /proc, ...)``."""
        mode = "readOnly: true" if self.read_only else "read-write"
        return (
            f"{self.name} volume (hostPath {self.node_path}, mountPath {self.mount_path}, {mode})"
        )


VOLUMES: tuple[Volume, ...] = (
    Volume("procdir", "/host/proc", "/proc", True, "processes, container PIDs, origin detection"),
    Volume("cgroups", "/host/sys/fs/cgroup", "/sys/fs/cgroup", True, "container metrics"),
    Volume("os-release-file", "/host/etc/os-release", "/etc/os-release", True, "host metadata"),
    Volume("dsdsocket", "/var/run/datadog", "/var/run/datadog", False, "DogStatsD over UDS"),
    Volume("apmsocket", "/var/run/datadog", "/var/run/datadog", False, "APM over UDS"),
    Volume("passwd", "/etc/passwd", "/etc/passwd", True, "process user names (root Agent)"),
    Volume("runtimesocketdir", "/host/var/run", "/var/run", True, "container tags, runtime"),
    Volume("logpodpath", "/var/log/pods", "/var/log/pods", True, "log collection"),
    Volume("logscontainerspath", "/var/log/containers", "/var/log/containers", True, "logs"),
    Volume("pointerdir", "/opt/datadog-agent/run", "/var/lib/datadog-agent/logs", False, "logs"),
)
_BY_NAME = {v.name: v for v in VOLUMES}


def volume(name: str) -> Volume:
    return _BY_NAME[name]


@dataclass(frozen=True, slots=True)
class Setting:
    """One Agent environment variable selfcheck reads: its default when unset, and its kind."""

    name: str
    default: str
    kind: str
    """``bool`` (Go strconv.ParseBool), ``port`` (spf13/cast ToIntE), ``path`` or ``url``."""


DEFAULT_DOGSTATSD_SOCKET = "/var/run/datadog/dsd.socket"
DEFAULT_APM_SOCKET = "/var/run/datadog/apm.socket"
DEFAULT_HEALTH_PORT = 5555
DEFAULT_DOGSTATSD_PORT = 8125
"""The Agent's ``dogstatsd_port``: UDP, 0 closes it (DataDog/datadog-agent pkg/config/setup)."""
EXPVAR_PORTS = (5000, 6000)
"""No DD_EXPVAR_PORT: the Agent's own default (and the Operator's), then the chart's."""

SETTINGS: tuple[Setting, ...] = (
    Setting("HOST_PROC", "", "path"),
    Setting("HOST_ETC", "", "path"),
    Setting("DD_CONTAINER_CGROUP_ROOT", "", "path"),
    Setting("DD_DOGSTATSD_SOCKET", DEFAULT_DOGSTATSD_SOCKET, "path"),
    Setting("DD_APM_RECEIVER_SOCKET", DEFAULT_APM_SOCKET, "path"),
    Setting("DOCKER_HOST", "", "url"),
    Setting("DD_CRI_SOCKET_PATH", "", "path"),
    Setting("DD_DOGSTATSD_ORIGIN_DETECTION", "false", "bool"),
    Setting("DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT", "false", "bool"),
    Setting("DD_ORIGIN_DETECTION_UNIFIED", "false", "bool"),
    Setting("DD_LOGS_ENABLED", "false", "bool"),
    Setting("DD_HEALTH_PORT", str(DEFAULT_HEALTH_PORT), "port"),
    Setting("DD_EXPVAR_PORT", "", "port"),
    Setting("DD_DOGSTATSD_PORT", str(DEFAULT_DOGSTATSD_PORT), "port"),
    Setting("DD_DOGSTATSD_NON_LOCAL_TRAFFIC", "false", "bool"),
)
"""Every Agent variable selfcheck's configuration reads (``selfcheck.config``)."""

ALSO_ALLOWED = frozenset(
    {
        "DD_APM_ENABLED",
        "DD_PROCESS_AGENT_ENABLED",
        "DD_USE_DOGSTATSD",
        "DD_APM_RECEIVER_PORT",
        "DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL",
        "DD_CLC_RUNNER_ENABLED",
    }
)
"""Further non-secret names ``agent_container`` compares (feature switches and ports);
``DD_CLC_RUNNER_ENABLED`` tells a Cluster Checks Runner from the node Agent (host.nodeagent)."""

ENV_ALLOWLIST: frozenset[str] = frozenset(s.name for s in SETTINGS) | ALSO_ALLOWED
"""The only environment names whose values are ever kept: sockets, ports, feature switches
and host paths, none of them secret. Adding a name is a deliberate, reviewed change."""
