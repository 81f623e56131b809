"""``agent_container``'s judges on fixed input: no root, no second container.

``test_agent_container.py`` proves the check end to end against two real containers (root);
here each pure judge gets a literal mount table, identity, environment or listener, and the
finding ids and texts it must give are written out.
"""

from __future__ import annotations

from selfcheck import agentpod
from selfcheck.checks.agent_container import (
    env_drift,
    identity_drift,
    listener_findings,
    mount_at,
    mount_drift,
    table_findings,
    volume_states,
)
from selfcheck.host import agent
from selfcheck.host.agent import ListenerVerdict
from selfcheck.host.capabilities import mask_of
from selfcheck.host.identity import Identity, identity_from_status
from selfcheck.host.procfs import Mount, parse_mountinfo
from selfcheck.model import Severity

DSD = {"DD_DOGSTATSD_SOCKET": "/var/run/datadog/dsd.socket"}


def mountinfo(*points: tuple[str, str]) -> list[Mount]:
    """Mount table lines for ``(mount point, "ro" | "rw")``, as the kernel writes them."""
    lines = [
        f"{100 + i} 1 0:{40 + i} / {point} {mode},relatime - ext4 /dev/sda1 rw"
        for i, (point, mode) in enumerate(points)
    ]
    return parse_mountinfo("\n".join(lines) + "\n")


CHART = (
    ("/host/proc", "ro"),
    ("/host/sys/fs/cgroup", "ro"),
    ("/host/etc/os-release", "ro"),
    ("/var/run/datadog", "rw"),
    ("/etc/passwd", "ro"),
    ("/host/var/run", "ro"),
)
"""The agent container's mounts in the chart's default render."""


def chart_without(point: str) -> list[Mount]:
    return mountinfo(*(m for m in CHART if m[0] != point))


def identity(uid: int = 0, groups: str = "", caps: tuple[str, ...] = ()) -> Identity:
    mask = f"{mask_of(caps):016x}"
    return identity_from_status(
        {
            "Uid": f"{uid}\t{uid}\t{uid}\t{uid}",
            "Gid": "0\t0\t0\t0",
            "Groups": groups,
            "CapEff": mask,
            "CapPrm": mask,
            "CapBnd": mask,
            "NoNewPrivs": "0",
            "Seccomp": "0",
        }
    )


def ids(findings: object) -> list[str]:
    return [f.id for f in findings]  # type: ignore[attr-defined]


# -- the mount table ------------------------------------------------------------------------


def test_mount_at_reads_var_run_as_run() -> None:
    mounts = mountinfo(("/run/datadog", "rw"))
    found = mount_at(mounts, "/var/run/datadog")
    assert found is not None and found.mount_point == "/run/datadog"
    assert mount_at(mounts, "/var/run") is None


def test_mount_at_takes_the_last_mount_stacked_under_either_spelling() -> None:
    """What the kernel shows last at a mount point is what a path reaches."""
    first = mountinfo(("/run/datadog", "ro"), ("/var/run/datadog", "rw"), ("/run/datadog", "rw"))
    found = mount_at(first, "/var/run/datadog")
    assert found is not None and found.mount_point == "/run/datadog" and found is first[2]
    later = mountinfo(("/run/datadog", "rw"), ("/var/run/datadog/", "ro"))
    assert mount_at(later, "/var/run/datadog") is later[1]


def test_the_charts_table_gives_no_finding() -> None:
    states = volume_states(mountinfo(*CHART), DSD)
    assert {name: s.describe() for name, s in states.items()} == {
        "procdir": "read-only",
        "cgroups": "read-only",
        "os-release-file": "read-only",
        "dsdsocket": "read-write",
        "passwd": "read-only",
        "runtimesocketdir": "read-only",
        "logpodpath": "absent",
        "logscontainerspath": "absent",
        "pointerdir": "absent",
    }
    assert list(table_findings(states, DSD, agentpod.SIDECAR)) == []


def test_a_missing_procdir_is_named_with_its_fix() -> None:
    states = volume_states(chart_without("/host/proc"), DSD)
    (finding,) = table_findings(states, DSD, agentpod.SIDECAR)
    assert (finding.id, finding.severity) == ("agent_procdir_missing", Severity.WARNING)
    assert finding.message == "The Agent container has no procdir mount at /host/proc."
    assert finding.remediation.startswith(
        "Add the procdir volumeMount at /host/proc, readOnly: true to the Agent container"
    )


def test_os_release_is_expected_in_sidecar_mode_only() -> None:
    states = volume_states(chart_without("/host/etc/os-release"), DSD)
    assert ids(table_findings(states, DSD, agentpod.SIDECAR)) == ["agent_os_release_file_missing"]
    assert ids(table_findings(states, DSD, agentpod.NODE)) == []


def test_writable_host_mount_and_read_only_socket_directory() -> None:
    flipped = [("/host/proc", "rw"), *CHART[1:3], ("/var/run/datadog", "ro"), *CHART[4:]]
    states = volume_states(mountinfo(*flipped), DSD)
    assert ids(table_findings(states, DSD, agentpod.SIDECAR)) == [
        "agent_procdir_writable",
        "agent_dsdsocket_read_only",
    ]


def test_logs_volumes_are_expected_when_logs_are_on() -> None:
    env = {**DSD, "DD_LOGS_ENABLED": "true"}
    states = volume_states(mountinfo(*CHART), env)
    assert ids(table_findings(states, env, agentpod.SIDECAR)) == [
        "agent_logpodpath_missing",
        "agent_logscontainerspath_missing",
        "agent_pointerdir_missing",
    ]


def test_the_sidecar_lacking_the_agents_mount_is_drift() -> None:
    theirs = volume_states(mountinfo(*CHART), DSD)
    mine = volume_states(chart_without("/host/sys/fs/cgroup"), DSD)
    (finding,) = mount_drift(theirs, mine)
    assert finding.id == "agent_cgroups_drift"
    assert finding.message == (
        "cgroups (/host/sys/fs/cgroup) is read-only in the Agent container but absent in the"
        " sidecar, so the sidecar's verdicts on it are not the Agent's."
    )
    assert list(mount_drift(theirs, theirs)) == []


# -- identity, environment, listeners -------------------------------------------------------


def test_identical_identities_give_no_finding() -> None:
    same = identity(0, "0", ("CAP_CHOWN",))
    assert list(identity_drift(same, same)) == []


def test_uid_groups_and_capabilities_drift() -> None:
    theirs = identity(100, "998", ("CAP_CHOWN", "CAP_SYS_PTRACE"))
    mine = identity(0, "", ("CAP_CHOWN",))
    findings = list(identity_drift(theirs, mine))
    assert ids(findings) == [
        "uid_drift",
        "groups_drift",
        "capeff_drift",
        "capprm_drift",
        "capbnd_drift",
    ]
    assert findings[0].message == "uid: the Agent container has 100, the sidecar 0."
    assert findings[1].message == "groups: the Agent container has 998, the sidecar none."
    assert findings[2].message == (
        "CapEff: the Agent container has CAP_SYS_PTRACE that the sidecar lacks."
    )


def test_env_drift_names_the_settings_never_their_values() -> None:
    theirs = {**DSD, "DD_LOGS_ENABLED": "true"}
    mine = {**DSD, "DD_LOGS_ENABLED": "false", "DD_NOT_ALLOWED": "x"}
    (finding,) = env_drift(theirs, mine)
    assert finding.message == (
        "1 DD_* setting differs between the Agent container and the sidecar: DD_LOGS_ENABLED;"
        " the Agent's values are the real configuration."
    )
    assert "true" not in finding.message + finding.remediation
    assert list(env_drift(theirs, theirs)) == []


def test_listener_findings_for_foreign_and_stale_sockets() -> None:
    dsd, apm = "/var/run/datadog/dsd.socket", "/var/run/datadog/apm.socket"
    listeners = {
        "dogstatsd": agent.Listener(dsd, ListenerVerdict.FOREIGN, note="pid 42"),
        "apm": agent.Listener(apm, ListenerVerdict.STALE, note="no listener"),
    }
    holder = agent.AgentProcess(7, agentpod.CORE, "/", None, None)
    held = agent.Listener(dsd, ListenerVerdict.AGENT, holder)
    assert list(listener_findings({"dogstatsd": held})) == []
    findings = list(listener_findings(listeners))
    assert ids(findings) == ["dogstatsd_listener_foreign", "apm_listener_stale"]
    assert findings[0].message == (
        "dogstatsd socket /var/run/datadog/dsd.socket: A process other than the Agent's holds"
        " the socket (pid 42)."
    )
    assert "DataDog/datadog-agent#4948" in findings[1].remediation
