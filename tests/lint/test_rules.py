"""Each lint rule on fixed pod templates: the status, reason and words it must give.

The end-to-end tests (``test_lint.py``, ``test_faults.py``) lint whole renders; these feed one
rule a pod built for it (``tests/lint/pods.py``), so a rule that stops seeing its fault fails
here by name, without a chart render in between.
"""

from __future__ import annotations

from selfcheck.lint import rules
from selfcheck.lint.pod import PodTemplate, agent_templates
from selfcheck.model import Outcome, Reason, Status
from tests.lint.pods import AGENT_VOLUMES, agent, container, pod, without

NON_LOCAL = {"DD_DOGSTATSD_NON_LOCAL_TRAFFIC": "true"}


def verdict(outcome: Outcome) -> tuple[Status, Reason]:
    return outcome.status, outcome.reason


SIDECAR_VOLUMES = (*AGENT_VOLUMES,)


def sidecar(**env: str) -> dict[str, object]:
    return container("selfcheck", SIDECAR_VOLUMES, env, uid=0)


# -- procfs, cgroups, os_release: a host file through a hostPath mount ---------------------


def test_procfs_ok_when_the_nodes_proc_is_mounted() -> None:
    outcome = rules.procfs(pod(agent()))
    assert verdict(outcome) == (Status.OK, Reason.OK)


def test_procfs_without_procdir_is_degraded_with_host_pid() -> None:
    outcome = rules.procfs(pod(agent(without("procdir"))))
    assert verdict(outcome) == (Status.DEGRADED, Reason.ENOENT)
    assert outcome.message == (
        "agent: /host/proc is not mounted (no procdir volumeMount); with hostPID the Agent"
        " falls back to its own /proc, without container tags"
    )


def test_procfs_without_procdir_nor_host_pid_is_failed() -> None:
    outcome = rules.procfs(pod(agent(without("procdir")), host_pid=False))
    assert verdict(outcome) == (Status.FAILED, Reason.ENOENT)
    assert outcome.message == "agent: /host/proc is not mounted (no procdir volumeMount)"


def test_procfs_pointing_at_another_host_directory_is_not_procfs() -> None:
    outcome = rules.procfs(pod(agent(HOST_PROC="/host/sys/fs/cgroup")))
    assert verdict(outcome) == (Status.FAILED, Reason.NOT_PROCFS)
    assert "is /sys/fs/cgroup (volume cgroups), not the node's /proc" in outcome.message


def test_procfs_in_an_empty_dir_is_not_procfs() -> None:
    outcome = rules.procfs(pod(agent(), empty=("procdir",)))
    assert verdict(outcome) == (Status.FAILED, Reason.NOT_PROCFS)
    assert "/host/proc is a emptyDir (volume procdir)" in outcome.message


def test_procfs_judges_the_sidecar_too() -> None:
    outcome = rules.procfs(pod(agent(), container("selfcheck", without("procdir"), uid=0)))
    assert verdict(outcome) == (Status.DEGRADED, Reason.ENOENT)
    assert outcome.message.startswith("selfcheck: /host/proc is not mounted")


def test_procfs_of_an_optional_container_is_a_note() -> None:
    trace = container("trace-agent", without("procdir"))
    outcome = rules.procfs(pod(agent(), trace))
    assert verdict(outcome) == (Status.OK, Reason.OK)
    assert outcome.details["notes"] == [
        "trace-agent: /host/proc is not mounted (no procdir volumeMount); with hostPID the"
        " Agent falls back to its own /proc, without container tags; it would report enoent"
        " for its own use"
    ]


def test_cgroups_missing_and_wrong() -> None:
    assert verdict(rules.cgroups(pod(agent()))) == (Status.OK, Reason.OK)
    missing = rules.cgroups(pod(agent(without("cgroups"))))
    assert verdict(missing) == (Status.FAILED, Reason.ENOENT)
    wrong = rules.cgroups(pod(agent(DD_CONTAINER_CGROUP_ROOT="/host/proc")))
    assert verdict(wrong) == (Status.FAILED, Reason.NO_CONTROLLERS)
    assert "not the node's /sys/fs/cgroup" in wrong.message


def test_os_release_missing_and_under_host_etc() -> None:
    assert verdict(rules.os_release(pod(agent()))) == (Status.OK, Reason.OK)
    missing = rules.os_release(pod(agent(without("os-release-file"))))
    assert verdict(missing) == (Status.FAILED, Reason.ENOENT)
    assert missing.message == (
        "agent: /host/etc/os-release is not mounted (no os-release-file volumeMount)"
    )
    moved = rules.os_release(pod(agent(HOST_ETC="/elsewhere")))
    assert verdict(moved) == (Status.FAILED, Reason.ENOENT)
    assert "/elsewhere/os-release is not mounted" in moved.message


# -- passwd ---------------------------------------------------------------------------------


def test_passwd_root_with_the_nodes_file_is_ok() -> None:
    assert verdict(rules.passwd(pod(agent()))) == (Status.OK, Reason.OK)


def test_passwd_root_without_the_nodes_file_loses_user_names() -> None:
    outcome = rules.passwd(pod(agent(without("passwd"))))
    assert verdict(outcome) == (Status.DEGRADED, Reason.LOW_UID_COVERAGE)
    assert outcome.message == (
        "agent: runs as root with the image's own /etc/passwd: host users go unnamed"
    )


def test_passwd_non_root_with_the_nodes_file_is_an_identity_mismatch() -> None:
    outcome = rules.passwd(pod(container("agent", AGENT_VOLUMES, {}, uid=100)))
    assert verdict(outcome) == (Status.DEGRADED, Reason.IDENTITY_MISMATCH)
    assert "runs as UID 100 with the node's /etc/passwd mounted" in outcome.message


# -- runtime_socket -------------------------------------------------------------------------


def test_runtime_socket_ok_under_the_default_directory() -> None:
    assert verdict(rules.runtime_socket(pod(agent()))) == (Status.OK, Reason.OK)


def test_runtime_socket_without_its_directory() -> None:
    outcome = rules.runtime_socket(pod(agent(without("runtimesocketdir"))))
    assert verdict(outcome) == (Status.FAILED, Reason.ENOENT)
    assert "no hostPath mount covers a default runtime socket path" in outcome.message


def test_runtime_socket_setting_outside_every_mount() -> None:
    outcome = rules.runtime_socket(pod(agent(DD_CRI_SOCKET_PATH="/run/k3s/containerd.sock")))
    assert verdict(outcome) == (Status.FAILED, Reason.ENOENT)
    assert outcome.message == (
        "agent: DD_CRI_SOCKET_PATH=/run/k3s/containerd.sock is outside every hostPath mount"
        " of the container"
    )


def test_runtime_socket_non_root_needs_a_group() -> None:
    non_root = container("agent", AGENT_VOLUMES, {}, uid=100, gid=100)
    refused = rules.runtime_socket(pod(non_root))
    assert verdict(refused) == (Status.FAILED, Reason.EACCES)
    assert "runs as 100:100 with no supplementalGroups" in refused.message
    grouped = rules.runtime_socket(pod(non_root, groups=(998,)))
    assert verdict(grouped) == (Status.OK, Reason.OK)
    assert grouped.details["notes"] == [
        "agent: runs as UID 100: the runtime socket's group must be its group or in"
        " spec.securityContext.supplementalGroups"
    ]


# -- dogstatsd_socket, apm_socket -----------------------------------------------------------


def test_dogstatsd_socket_shared_by_agent_and_sidecar() -> None:
    outcome = rules.dogstatsd_socket(pod(agent(), sidecar()))
    assert verdict(outcome) == (Status.OK, Reason.OK)


def test_dogstatsd_socket_not_set_means_udp_for_applications() -> None:
    """The Operator with UDS off: no DD_DOGSTATSD_SOCKET, applications use the UDP port."""
    outcome = rules.dogstatsd_socket(pod(container("agent", AGENT_VOLUMES, {})))
    assert verdict(outcome) == (Status.SKIPPED, Reason.NOT_ENABLED)
    assert outcome.message == (
        "agent: DD_DOGSTATSD_SOCKET is not set: applications send over UDP port 8125 "
        "(judged by dogstatsd_udp)"
    )


def test_dogstatsd_socket_not_set_with_udp_closed() -> None:
    closed = container("agent", AGENT_VOLUMES, {"DD_DOGSTATSD_PORT": "0"})
    outcome = rules.dogstatsd_socket(pod(closed))
    assert verdict(outcome) == (Status.FAILED, Reason.ENOENT)
    assert outcome.message == (
        "agent: DD_DOGSTATSD_SOCKET is not set: the Agent opens no DogStatsD socket"
    )


def test_dogstatsd_socket_in_an_empty_dir() -> None:
    """Kept for the Agent's own containers while UDP takes other pods' traffic (the chart's
    useSocketVolume: false); unreachable for everyone else when it does not."""
    udp = agent(DD_DOGSTATSD_NON_LOCAL_TRAFFIC="true")
    internal = rules.dogstatsd_socket(pod(udp, empty=("dsdsocket",)))
    assert verdict(internal) == (Status.SKIPPED, Reason.NOT_ENABLED)
    assert "emptyDir volume dsdsocket: only the Agent's own containers" in internal.message
    private = rules.dogstatsd_socket(pod(agent(), empty=("dsdsocket",)))
    assert verdict(private) == (Status.FAILED, Reason.NOT_SHARED)
    assert "datadog.dogstatsd.useSocketVolume" in private.remediation


def test_dogstatsd_udp_where_applications_use_it() -> None:
    ok = rules.dogstatsd_udp(pod(container("agent", AGENT_VOLUMES, NON_LOCAL)))
    assert verdict(ok) == (Status.OK, Reason.OK)
    assert ok.message.startswith("the Agent listens on UDP 8125 on every address")
    loopback = rules.dogstatsd_udp(pod(container("agent", AGENT_VOLUMES, {})))
    assert verdict(loopback) == (Status.FAILED, Reason.NOT_SHARED)
    assert "DD_DOGSTATSD_NON_LOCAL_TRAFFIC" in loopback.message
    assert "datadog.dogstatsd.nonLocalTraffic" in loopback.remediation
    beside_the_socket = rules.dogstatsd_udp(pod(agent()))
    assert verdict(beside_the_socket) == (Status.SKIPPED, Reason.NOT_ENABLED)
    closed = rules.dogstatsd_udp(pod(agent(DD_DOGSTATSD_PORT="0")))
    assert verdict(closed) == (Status.SKIPPED, Reason.NOT_ENABLED)


def test_dogstatsd_udp_port_the_agent_does_not_listen_on() -> None:
    spec = container("agent", AGENT_VOLUMES, {**NON_LOCAL, "DD_DOGSTATSD_PORT": "9125"})
    spec["ports"] = [{"containerPort": 8125, "hostPort": 8125, "protocol": "UDP"}]
    outcome = rules.dogstatsd_udp(pod(spec))
    assert verdict(outcome) == (Status.FAILED, Reason.ECONNREFUSED)
    assert "containerPort 8125/UDP (hostPort 8125)" in outcome.message
    assert "DD_DOGSTATSD_PORT=9125" in outcome.message
    assert "datadog.dogstatsd.port" in outcome.remediation
    off = rules.dogstatsd_udp(pod(agent(DD_USE_DOGSTATSD="false", **NON_LOCAL)))
    assert verdict(off) == (Status.FAILED, Reason.ECONNREFUSED)


def test_dogstatsd_udp_values_the_agent_rejects() -> None:
    bad = container("agent", AGENT_VOLUMES, {"DD_DOGSTATSD_NON_LOCAL_TRAFFIC": "yes"})
    outcome = rules.dogstatsd_udp(pod(bad))
    assert verdict(outcome) == (Status.FAILED, Reason.NOT_SHARED)  # "yes" reads false
    assert any("'yes' is not a boolean" in i for i in outcome.details["issues"])


def test_dogstatsd_socket_on_a_read_only_volume() -> None:
    read_only = container(
        "agent",
        AGENT_VOLUMES,
        {"DD_DOGSTATSD_SOCKET": "/var/run/datadog/dsd.socket"},
        read_only=("dsdsocket",),
    )
    outcome = rules.dogstatsd_socket(pod(read_only))
    assert verdict(outcome) == (Status.FAILED, Reason.ENOENT)
    assert "is on read-only volume dsdsocket" in outcome.message


def test_dogstatsd_socket_the_sidecar_cannot_reach() -> None:
    lonely = container("selfcheck", without("dsdsocket"), uid=0)
    outcome = rules.dogstatsd_socket(pod(agent(), lonely))
    assert verdict(outcome) == (Status.FAILED, Reason.ENOENT)
    assert outcome.message.startswith("selfcheck: /var/run/datadog/dsd.socket is on no volume")


def test_apm_socket_skipped_without_the_setting() -> None:
    outcome = rules.apm_socket(pod(agent()))
    assert verdict(outcome) == (Status.SKIPPED, Reason.NOT_ENABLED)


def test_apm_socket_without_a_trace_agent() -> None:
    outcome = rules.apm_socket(pod(agent(DD_APM_RECEIVER_SOCKET="/var/run/datadog/apm.socket")))
    assert verdict(outcome) == (Status.FAILED, Reason.ENOENT)
    assert "the pod has no trace-agent container" in outcome.message


def test_apm_socket_shared_by_trace_agent_and_sidecar() -> None:
    apm = {"DD_APM_RECEIVER_SOCKET": "/var/run/datadog/apm.socket"}
    trace = container("trace-agent", ("dsdsocket",), apm)
    outcome = rules.apm_socket(pod(agent(**apm), trace, sidecar(**apm)))
    assert verdict(outcome) == (Status.OK, Reason.OK)


# -- origin_detection, pod_logs, agent_health ----------------------------------------------


def test_origin_detection_ok_with_host_pid_and_procdir() -> None:
    outcome = rules.origin_detection(pod(agent(DD_DOGSTATSD_ORIGIN_DETECTION="true")))
    assert verdict(outcome) == (Status.OK, Reason.OK)
    assert outcome.message == "hostPID and the node's /proc are in place (origin detection on)"


def test_origin_detection_without_host_pid() -> None:
    outcome = rules.origin_detection(pod(agent(), host_pid=False))
    assert verdict(outcome) == (Status.FAILED, Reason.NOT_HOST_PID)
    assert outcome.message == (
        "pod: hostPID is not true: senders in other pods arrive with PID 0"
        " (origin detection is off, so this gates nothing)"
    )


def test_origin_detection_without_procdir() -> None:
    outcome = rules.origin_detection(pod(agent(without("procdir"))))
    assert verdict(outcome) == (Status.FAILED, Reason.PROCFS_MISSING)


def test_origin_detection_a_boolean_the_agent_reads_as_false() -> None:
    outcome = rules.origin_detection(pod(agent(DD_DOGSTATSD_ORIGIN_DETECTION="yes")))
    assert verdict(outcome) == (Status.DEGRADED, Reason.BAD_VALUE)
    assert "DD_DOGSTATSD_ORIGIN_DETECTION='yes' is not a boolean to the Agent" in outcome.message


def test_pod_logs_skipped_when_off() -> None:
    assert verdict(rules.pod_logs(pod(agent()))) == (Status.SKIPPED, Reason.NOT_ENABLED)


def test_pod_logs_enabled_without_the_mount() -> None:
    outcome = rules.pod_logs(pod(agent(DD_LOGS_ENABLED="true")))
    assert verdict(outcome) == (Status.FAILED, Reason.ENOENT)
    assert outcome.message == "agent: /var/log/pods is not the node's /var/log/pods"


def test_pod_logs_enabled_for_a_non_root_agent() -> None:
    logs = (*AGENT_VOLUMES, "logpodpath")
    non_root = container("agent", logs, {"DD_LOGS_ENABLED": "true"}, uid=100)
    outcome = rules.pod_logs(pod(non_root))
    assert verdict(outcome) == (Status.FAILED, Reason.EACCES)
    root = rules.pod_logs(pod(container("agent", logs, {"DD_LOGS_ENABLED": "true"})))
    assert verdict(root) == (Status.OK, Reason.OK)


def test_agent_health_ports() -> None:
    ok = rules.agent_health(pod(agent(), sidecar()))
    assert verdict(ok) == (Status.OK, Reason.OK)
    assert ok.message == "the Agent serves its health on 127.0.0.1:5555, where the sidecar asks"
    bad = rules.agent_health(pod(agent(DD_HEALTH_PORT="health")))
    assert verdict(bad) == (Status.DEGRADED, Reason.BAD_VALUE)
    elsewhere = rules.agent_health(pod(agent(), sidecar(DD_HEALTH_PORT="5556")))
    assert verdict(elsewhere) == (Status.FAILED, Reason.ECONNREFUSED)
    assert elsewhere.message == (
        "selfcheck: asks the Agent's health on port 5556, the Agent serves it on 5555"
    )


def _k3s_chart_pod(socket: str) -> PodTemplate:
    """The chart with datadog.criSocketPath=<socket>: DD_CRI_SOCKET_PATH=/host<socket> and the
    socket's directory mounted at /host<directory> (runtimesocketdir)."""
    directory = socket.rsplit("/", 1)[0]
    spec = agent(("procdir", "cgroups"), DD_CRI_SOCKET_PATH=f"/host{socket}")
    spec["volumeMounts"].append(
        {"name": "runtimesocketdir", "mountPath": f"/host{directory}", "readOnly": True}
    )
    doc = {
        "kind": "Pod",
        "metadata": {"name": "datadog"},
        "spec": {
            "hostPID": True,
            "containers": [spec],
            "volumes": [
                {"name": "procdir", "hostPath": {"path": "/proc"}},
                {"name": "cgroups", "hostPath": {"path": "/sys/fs/cgroup"}},
                {"name": "runtimesocketdir", "hostPath": {"path": directory}},
            ],
        },
    }
    return agent_templates([doc])[0]


def test_runtime_socket_the_charts_k3s_setting() -> None:
    outcome = rules.runtime_socket(_k3s_chart_pod("/run/k3s/containerd/containerd.sock"))
    assert verdict(outcome) == (Status.OK, Reason.OK), outcome.message
    assert "notes" not in outcome.details


def test_runtime_socket_a_path_naming_no_runtime_is_noted() -> None:
    """Bottlerocket's /run/dockershim.sock: the Agent runs the CRI check only."""
    outcome = rules.runtime_socket(_k3s_chart_pod("/run/dockershim.sock"))
    assert verdict(outcome) == (Status.OK, Reason.OK)
    notes = outcome.details["notes"]
    assert any(
        note.startswith(
            "agent: DD_CRI_SOCKET_PATH=/host/run/dockershim.sock names neither containerd nor "
            "crio: the Agent runs the CRI check only"
        )
        for note in notes
    ), notes
