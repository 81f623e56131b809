"""security: the audit's findings against real privileges and real mounts.

Every scenario is built for real on this machine (root, not containerized, so it holds every
capability): a private mount namespace (``unshare -m``) with bind mounts of ``/proc``, the
cgroup tree, ``/etc/passwd`` and ``/etc/os-release`` at their ``/host/...`` paths, read-only or
read-write; processes whose capability sets, UID and no-new-privs come from ``setpriv``; a new
PID namespace from ``unshare --pid``; a seccomp filter loaded through ``prctl`` by
``tests/support/seccomp.py``; and a read-only root file system by remounting ``/`` read-only
inside the namespace. The CLI then runs in that process, as the sidecar would in the pod.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from selfcheck.checks import security
from selfcheck.context import CheckContext
from selfcheck.host.capabilities import CapabilitySets, mask_of
from selfcheck.host.eyes import own_eyes
from selfcheck.host.identity import Identity
from selfcheck.host.procfs import parse_mountinfo
from selfcheck.host.view import HostView
from selfcheck.model import Reason, Severity, Status
from selfcheck.registry import known_ids, required_ids, settle
from tests.support.configs import make_config
from tests.support.run import AS_AGENT_USER, Run, base_env, in_shell, python_command
from tests.support.seccomp import with_seccomp

CHECK = ("check", "--only", "security", "--json")
RUNTIME_DEFAULT_CAPS = {
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
}
"""The container runtimes' default capability set, as moby/moby oci/caps/defaults.go lists it,
written out rather than read from the module under test."""
RUNTIME_DEFAULT = ",".join(
    "+" + name.removeprefix("CAP_").lower() for name in sorted(RUNTIME_DEFAULT_CAPS)
)
NO_PTRACE = ("setpriv", "--inh-caps=-all", "--bounding-set=-sys_ptrace")
DEFAULT_CAPS_ONLY = ("setpriv", "--inh-caps=-all", f"--bounding-set=-all,{RUNTIME_DEFAULT}")
IN_CONTAINER = {"HOST_PROC": "/proc", "SELFCHECK_CONTAINERIZED": "true"}
"""The machine's own /proc, audited as a container would be (the audit's subject)."""
MOUNT_FINDINGS = {
    "procdir_writable",
    "cgroups_writable",
    "os_release_file_writable",
    "passwd_writable",
    "runtimesocketdir_writable",
    "logpodpath_writable",
    "logscontainerspath_writable",
    "cgroups_submounts_writable",
}
"""The read-only volumes of the Agent's table, one finding each when mounted read-write."""
SEVERITIES = (
    ("ptrace_with_host_pid", "critical"),
    ("sys_admin", "critical"),
    ("extra_capabilities", "warning"),
    ("root_not_needed", "info"),
    ("root_for_logs", "info"),
    ("no_seccomp", "info"),
    ("privilege_escalation_allowed", "info"),
    ("root_fs_writable", "warning"),
    *((fid, "warning") for fid in sorted(MOUNT_FINDINGS)),
)
"""Every finding and its documented severity (docs/checks/security.md)."""


@dataclass
class Host:
    """A world-traversable tree of mount points shaped like the Agent's container paths."""

    root: Path
    setup: list[str] = field(default_factory=list)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def bind(self, source: str, target: str, read_only: bool, recursive: bool = False) -> None:
        dst = shlex.quote(str(self.path(target)))
        self.setup.append(f"mount {'--rbind' if recursive else '--bind'} {source} {dst}")
        if read_only:
            self.setup.append(f"mount -o remount,bind,ro {dst}")

    def read_only_below(self, target: str) -> None:
        """Remount every submount under ``target`` read-only (what recursiveReadOnly does)."""
        prefix = shlex.quote(f"{self.path(target)}/")
        self.setup.append(
            f"for m in $(awk -v p={prefix} 'index($5, p) == 1 {{print $5}}' /proc/self/mountinfo);"
            " do mount -o remount,bind,ro $m; done"
        )

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "HOST_PROC": str(self.path("host/proc")),
            "DD_CONTAINER_CGROUP_ROOT": str(self.path("host/sys/fs/cgroup")),
            "HOST_ETC": str(self.path("host/etc")),
            "DD_CRI_SOCKET_PATH": str(self.path("host/var/run/containerd.sock")),
            "SELFCHECK_POD_LOGS_DIR": str(self.path("var/log/pods")),
            "DD_DOGSTATSD_SOCKET": str(self.path("run/datadog/dsd.socket")),
            "DD_APM_RECEIVER_SOCKET": str(self.path("run/datadog/apm.socket")),
            "SELFCHECK_CONTAINERIZED": "true",
            **extra,
        }

    def command(
        self,
        args: Sequence[str] = CHECK,
        wrap: Sequence[str] = (),
        pid_ns: bool = False,
        read_only_root: bool = False,
    ) -> str:
        """The inner script: mounts, then the CLI behind the namespaces and privilege wrappers."""
        steps = list(self.setup)
        if read_only_root:
            steps.append("mount -o remount,bind,ro /")
        unshare_pid = "unshare --pid --fork --mount-proc " if pid_ns else ""
        steps.append(f"exec {unshare_pid}{shlex.join(wrap)} $SELFCHECK {shlex.join(args)}")
        return "\n".join(steps)

    def run(self, env: dict[str, str] | None = None, **kwargs: Any) -> Run:
        return in_shell(
            'exec unshare -m --propagation private sh -euc "$INNER"',
            {**(env if env is not None else self.env()), "INNER": self.command(**kwargs)},
        )


@pytest.fixture
def host(open_tmp: Path) -> Host:
    for rel in ("host/proc", "host/sys/fs/cgroup", "host/etc", "host/var/run", "var/log/pods"):
        (open_tmp / rel).mkdir(parents=True)
    for rel in ("run/datadog", "src/pods"):
        (open_tmp / rel).mkdir(parents=True)
    for name in ("passwd", "os-release"):
        (open_tmp / "host/etc" / name).touch()
    return Host(open_tmp)


def audit(run: Run) -> dict[str, Any]:
    result = run.check("security")
    assert result["status"] != "error", result
    return result


def ids(result: dict[str, Any]) -> set[str]:
    return {f["id"] for f in result.get("findings", [])}


def finding(result: dict[str, Any], fid: str) -> dict[str, Any]:
    return next(f for f in result["findings"] if f["id"] == fid)


# --- the machine itself -------------------------------------------------------------------


@pytest.mark.root
def test_a_machine_that_is_no_container_is_not_audited_as_one() -> None:
    """On a VM (the README's first command) the audit's words (securityContext, hostPath
    mounts, Pod Security level) describe nothing real: skipped with why, exit 0."""
    from tests.support.run import selfcheck

    run = selfcheck(list(CHECK), {"HOST_PROC": "/proc", "SELFCHECK_CONTAINERIZED": "false"})
    result = run.check("security")
    assert run.code == 0
    assert (result["status"], result["reason"]) == ("skipped", "not_applicable")
    assert "not in a container" in result["message"]
    assert "findings" not in result and "pod" not in result["message"].replace("Pod Sec", "")


@pytest.mark.root
def test_the_bare_machine_as_root() -> None:
    """Root, every capability, the initial PID namespace, no host mounts: as bad as it gets,
    and only a warning-level status because security is optional by default."""
    from tests.support.run import selfcheck

    run = selfcheck(list(CHECK), IN_CONTAINER)
    result = audit(run)
    assert run.code == 1
    assert (result["status"], result["reason"]) == ("degraded", "critical_findings")
    assert {
        "ptrace_with_host_pid",
        "sys_admin",
        "extra_capabilities",
        "root_not_needed",
        "no_seccomp",
        "privilege_escalation_allowed",
        "root_fs_writable",
    } <= ids(result)
    assert not ids(result) & MOUNT_FINDINGS  # /proc and /etc/passwd are not host mounts here
    assert finding(result, "ptrace_with_host_pid")["severity"] == "critical"
    details = result["details"]
    assert details["host_pid"] is True and details["uid"] == 0
    assert "CAP_SYS_PTRACE" in details["CapEff"] and details["mounts"] == []
    assert details["pod_security_level"] == "privileged"
    assert "hostPID: true" in details["pod_security_forced_by"]


# --- mounts -------------------------------------------------------------------------------


def _mount_table(host: Host, read_only: bool, recursive_ro: bool) -> None:
    host.bind("/proc", "host/proc", read_only)
    host.bind("/sys/fs/cgroup", "host/sys/fs/cgroup", read_only, recursive=True)
    cgroup_subdirs = sorted(p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir())
    if not any(os.path.ismount(p) for p in cgroup_subdirs):
        # cgroup v2 has no controller submounts: stack one, as a v1 node has a dozen.
        sub = host.path("host/sys/fs/cgroup") / cgroup_subdirs[0].name
        host.setup.append(f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(sub))}")
    if recursive_ro:
        host.read_only_below("host/sys/fs/cgroup")
    host.bind("/etc/passwd", "host/etc/passwd", read_only)
    host.bind("/etc/os-release", "host/etc/os-release", read_only)
    host.bind("/run", "host/var/run", read_only)
    host.bind(shlex.quote(str(host.path("src/pods"))), "var/log/pods", read_only)
    host.bind(shlex.quote(str(host.path("src/pods"))), "run/datadog", read_only=False)


@pytest.mark.root
def test_read_write_host_mounts_are_each_a_finding(host: Host) -> None:
    _mount_table(host, read_only=False, recursive_ro=False)
    result = audit(host.run())
    expected = {
        "procdir_writable",
        "cgroups_writable",
        "passwd_writable",
        "os_release_file_writable",
        "runtimesocketdir_writable",
        "logpodpath_writable",
    }
    assert ids(result) & MOUNT_FINDINGS == expected
    assert all(finding(result, fid)["severity"] == "warning" for fid in expected)
    assert str(host.path("host/proc")) in finding(result, "procdir_writable")["message"]
    assert (
        "readOnly: true on the procdir volumeMount (/host/proc)"
        in (finding(result, "procdir_writable")["remediation"])
    )
    mounts = {m["volume"]: m for m in result["details"]["mounts"]}
    assert mounts["dsdsocket"]["writable"] is True  # the Agent needs write there: no finding
    assert any("dsdsocket" in s for s in result["details"]["pod_security_forced_by"])


@pytest.mark.root
def test_read_only_host_mounts_give_no_mount_finding(host: Host) -> None:
    _mount_table(host, read_only=True, recursive_ro=True)
    result = audit(host.run())
    assert not ids(result) & MOUNT_FINDINGS
    mounts = {m["volume"]: m for m in result["details"]["mounts"]}
    assert set(mounts) == {
        "procdir",
        "cgroups",
        "os-release-file",
        "passwd",
        "runtimesocketdir",
        "logpodpath",
        "dsdsocket",
    }
    assert not any(m["writable"] for v, m in mounts.items() if v != "dsdsocket")
    assert mounts["cgroups"]["writable_submounts"] == []


@pytest.mark.root
def test_read_only_cgroups_with_writable_controller_submounts_is_a_warning(host: Host) -> None:
    """``readOnly: true`` on a hostPath reaches only the top mount; the cgroup v1 controllers
    below it stay writable unless the volumeMount sets recursiveReadOnly: what the chart
    renders on a v1 node, and still a write path into every pod's cgroups."""
    _mount_table(host, read_only=True, recursive_ro=False)
    run = host.run()
    result = audit(run)
    assert (result["status"], result["reason"]) in {
        ("degraded", "findings"),
        ("degraded", "critical_findings"),  # this root test process also holds SYS_ADMIN
    }
    assert ids(result) & MOUNT_FINDINGS == {"cgroups_submounts_writable"}
    cgroups = finding(result, "cgroups_submounts_writable")
    assert cgroups["severity"] == "warning"
    mounts = {m["volume"]: m for m in result["details"]["mounts"]}
    below = mounts["cgroups"]["writable_submounts"]
    assert below and mounts["cgroups"]["writable"] is False
    assert below[0] in cgroups["message"] and "read-write" in cgroups["message"]
    assert "recursiveReadOnly: IfPossible" in cgroups["remediation"]
    assert "falls back silently" in cgroups["remediation"]
    assert "cgroups_submounts_writable" in result["message"]


@pytest.mark.root
def test_read_only_cgroups_without_writable_submounts_gives_no_finding(host: Host) -> None:
    """The same tree with every controller remounted read-only, as recursiveReadOnly makes it."""
    _mount_table(host, read_only=True, recursive_ro=True)
    result = audit(host.run())
    assert "cgroups_submounts_writable" not in ids(result)
    assert "cgroups_submounts_writable" not in result["message"]


@pytest.mark.root
@pytest.mark.parametrize("read_only", [False, True])
def test_passwd_at_the_charts_own_path(host: Host, read_only: bool) -> None:
    """The chart mounts the node's passwd over the container's /etc/passwd (root Agent only)."""
    host.setup.append("mount --bind /etc/passwd /etc/passwd")
    if read_only:
        host.setup.append("mount -o remount,bind,ro /etc/passwd")
    result = audit(host.run(env=IN_CONTAINER))
    assert ("passwd_writable" in ids(result)) is not read_only
    assert [m["volume"] for m in result["details"]["mounts"]] == ["passwd"]


# --- capabilities and the host PID namespace -----------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize("with_ptrace", [True, False], ids=["ptrace", "no-ptrace"])
@pytest.mark.parametrize("new_pid_ns", [False, True], ids=["host-pid", "own-pid"])
def test_ptrace_with_host_pid_only_when_both_hold(
    host: Host, with_ptrace: bool, new_pid_ns: bool
) -> None:
    host.bind("/proc", "host/proc", read_only=True)
    run = host.run(wrap=() if with_ptrace else NO_PTRACE, pid_ns=new_pid_ns)
    result = audit(run)
    details = result["details"]
    assert details["host_pid"] is (not new_pid_ns)
    assert ("CAP_SYS_PTRACE" in details["CapEff"]) is with_ptrace
    assert ("CAP_SYS_PTRACE" in details["CapBnd"]) is with_ptrace
    assert ("ptrace_with_host_pid" in ids(result)) is (with_ptrace and not new_pid_ns)
    assert ("hostPID: true" in details["pod_security_forced_by"]) is (not new_pid_ns)


@pytest.mark.root
@pytest.mark.parametrize("new_pid_ns", [False, True])
def test_host_pid_without_a_host_procfs_uses_the_initial_namespace(
    host: Host, new_pid_ns: bool
) -> None:
    """HOST_PROC=/proc (no procdir volume): NSpid cannot tell, the namespace inode can."""
    result = audit(host.run(env=IN_CONTAINER, pid_ns=new_pid_ns))
    assert result["details"]["host_pid"] is (not new_pid_ns)
    assert ("ptrace_with_host_pid" in ids(result)) is (not new_pid_ns)


@pytest.mark.root
def test_runtime_default_capabilities_are_not_findings(host: Host) -> None:
    host.bind("/proc", "host/proc", read_only=True)
    result = audit(host.run(wrap=DEFAULT_CAPS_ONLY))
    assert not {"sys_admin", "extra_capabilities", "ptrace_with_host_pid"} & ids(result)
    assert set(result["details"]["CapBnd"]) == RUNTIME_DEFAULT_CAPS
    assert (result["status"], result["reason"]) == ("degraded", "findings")


@pytest.mark.root
def test_one_extra_capability_is_named(host: Host) -> None:
    host.bind("/proc", "host/proc", read_only=True)
    wrap = ("setpriv", "--inh-caps=-all", f"--bounding-set=-all,{RUNTIME_DEFAULT},+sys_ptrace")
    result = audit(host.run(wrap=wrap))
    extra = finding(result, "extra_capabilities")
    assert "1 capability beyond the runtime default: CAP_SYS_PTRACE." in extra["message"]
    assert "ptrace_with_host_pid" in ids(result) and "sys_admin" not in ids(result)
    assert result["details"]["pod_security_level"] == "privileged"


@pytest.mark.root
@pytest.mark.parametrize("no_new_privs", [False, True])
def test_non_root_bounding_set_counts_only_while_escalation_is_allowed(
    host: Host, no_new_privs: bool
) -> None:
    """UID 100 with SYS_PTRACE only in its bounding set: a setuid or file-capability binary
    could raise it there, unless no-new-privs forbids exactly that."""
    host.bind("/proc", "host/proc", read_only=True)
    wrap = [*AS_AGENT_USER, "--inh-caps=-all", "--bounding-set=-all,+sys_ptrace"]
    if no_new_privs:
        wrap.append("--no-new-privs")
    result = audit(host.run(wrap=wrap))
    assert result["details"]["CapEff"] == []
    assert result["details"]["CapBnd"] == ["CAP_SYS_PTRACE"]
    assert ("ptrace_with_host_pid" in ids(result)) is not no_new_privs
    assert ("privilege_escalation_allowed" in ids(result)) is not no_new_privs
    if not no_new_privs:
        message = finding(result, "ptrace_with_host_pid")["message"]
        assert "bounding set and privilege escalation is allowed" in message


@pytest.mark.root
def test_non_root_with_an_ambient_capability(host: Host) -> None:
    host.bind("/proc", "host/proc", read_only=True)
    wrap = [*AS_AGENT_USER, "--inh-caps=+sys_ptrace", "--ambient-caps=+sys_ptrace"]
    result = audit(host.run(wrap=wrap))
    assert result["details"]["CapAmb"] == ["CAP_SYS_PTRACE"]
    assert result["details"]["uid"] == 100
    assert "in the effective set" in finding(result, "ptrace_with_host_pid")["message"]
    assert not {"root_not_needed", "root_for_logs"} & ids(result)


# --- identity: root, no-new-privs, seccomp, root file system --------------------------------


@pytest.mark.root
@pytest.mark.parametrize("logs", [False, True])
def test_root_is_a_finding_unless_logs_need_it(host: Host, logs: bool) -> None:
    env = host.env(DD_LOGS_ENABLED="true" if logs else "false")
    result = audit(host.run(env=env, wrap=DEFAULT_CAPS_ONLY))
    assert ("root_not_needed" in ids(result)) is not logs
    assert ("root_for_logs" in ids(result)) is logs
    if logs:
        assert finding(result, "root_for_logs")["severity"] == "info"
        assert result["details"]["root_needed_by"] == ["logs (DD_LOGS_ENABLED)"]


@pytest.mark.root
@pytest.mark.parametrize("no_new_privs", [False, True])
def test_no_new_privs(host: Host, no_new_privs: bool) -> None:
    wrap = ["setpriv", "--no-new-privs"] if no_new_privs else ["setpriv"]
    result = audit(host.run(wrap=wrap))
    assert result["details"]["no_new_privs"] == (1 if no_new_privs else 0)
    assert ("privilege_escalation_allowed" in ids(result)) is not no_new_privs


@pytest.mark.root
@pytest.mark.parametrize("filtered", [False, True])
def test_seccomp_filter(host: Host, filtered: bool) -> None:
    wrap = with_seccomp([]) if filtered else []
    result = audit(host.run(wrap=wrap))
    assert result["details"]["seccomp"] == ("filter" if filtered else "disabled")
    assert ("no_seccomp" in ids(result)) is not filtered


@pytest.mark.root
@pytest.mark.parametrize("read_only_root", [False, True])
def test_root_file_system(host: Host, read_only_root: bool) -> None:
    result = audit(host.run(read_only_root=read_only_root))
    assert ("root_fs_writable" in ids(result)) is not read_only_root


# --- the whole picture: status, exit codes, Pod Security level ------------------------------

LEAST_PRIVILEGE = (
    *with_seccomp([]),  # loaded as root, kept across the exec and the UID change
    *AS_AGENT_USER,
    "--no-new-privs",
    "--inh-caps=-all",
    "--bounding-set=-all",
)


@pytest.mark.root
def test_least_privilege_is_ok_and_restricted(host: Host) -> None:
    host.bind("/proc", "host/proc", read_only=True)
    run = host.run(wrap=LEAST_PRIVILEGE, pid_ns=True, read_only_root=True)
    result = audit(run)
    assert run.code == 0, run.stdout
    assert (result["status"], result["reason"]) == ("ok", "ok")
    assert ids(result) == set()
    details = result["details"]
    assert details["pod_security_level"] == "privileged"  # the procdir hostPath remains
    assert details["pod_security_forced_by"] == ["hostPath volumes: procdir"]


@pytest.mark.root
def test_no_host_access_at_all_is_restricted(host: Host) -> None:
    run = host.run(env=IN_CONTAINER, wrap=LEAST_PRIVILEGE, pid_ns=True, read_only_root=True)
    result = audit(run)
    assert run.code == 0
    assert result["details"]["pod_security_level"] == "restricted"
    assert result["details"]["pod_security_forced_by"] == []
    assert "Pod Security level restricted" in result["message"]


@pytest.mark.root
def test_baseline_names_what_keeps_it_from_restricted(host: Host) -> None:
    wrap = (*DEFAULT_CAPS_ONLY, "--no-new-privs")
    result = audit(host.run(env=IN_CONTAINER, wrap=wrap, pid_ns=True))
    assert result["details"]["pod_security_level"] == "baseline"
    forced = result["details"]["pod_security_forced_by"]
    assert "runs as UID 0 (runAsNonRoot)" in forced
    assert "no RuntimeDefault or Localhost seccompProfile" in forced
    assert "allowPrivilegeEscalation is not false" not in forced


@pytest.mark.root
@pytest.mark.parametrize(
    ("wrap", "code", "status", "reason"),
    [
        ((), 2, "failed", "critical_findings"),
        (DEFAULT_CAPS_ONLY, 1, "degraded", "findings"),
    ],
    ids=["critical", "warnings-only"],
)
def test_required_security_fails_only_on_a_critical_finding(
    host: Host, wrap: tuple[str, ...], code: int, status: str, reason: str
) -> None:
    host.bind("/proc", "host/proc", read_only=True)
    run = host.run(env=host.env(SELFCHECK_REQUIRE="security"), wrap=wrap)
    result = audit(run)
    assert result["required"] is True
    assert (run.code, result["status"], result["reason"]) == (code, status, reason)


# --- surfaces: metrics, verbose report, explain -------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_in_scenario(host: Host, env: dict[str, str], **kwargs: Any) -> str:
    """Run ``selfcheck serve`` inside the scenario and return ``/metrics`` after its first
    security run; the server's process group (started here) is stopped afterwards."""
    port = _free_port()
    others = ",".join(sorted(known_ids() - {"security"}))
    full_env = base_env(
        {
            **env,
            "SELFCHECK": shlex.join(python_command()),
            "SELFCHECK_LISTEN": f"127.0.0.1:{port}",
            "SELFCHECK_SKIP": others,
            "INNER": host.command(args=("serve",), **kwargs),
        }
    )
    proc = subprocess.Popen(
        ["sh", "-euc", 'exec unshare -m --propagation private sh -euc "$INNER"'],
        env=full_env,
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = str(response.read().decode())
            except OSError:
                body = ""
            if 'selfcheck_check_runs_total{check="security"} 1.0' in body:
                return body
            time.sleep(0.1)
        raise AssertionError("selfcheck serve did not publish a security result in 30 s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.mark.root
def test_metrics_of_a_privileged_agent(host: Host) -> None:
    host.bind("/proc", "host/proc", read_only=False)
    body = scrape_in_scenario(host, host.env())
    for line in (
        'selfcheck_finding{check="security",finding="ptrace_with_host_pid",'
        'severity="critical"} 1.0',
        'selfcheck_finding{check="security",finding="sys_admin",severity="critical"} 1.0',
        'selfcheck_finding{check="security",finding="procdir_writable",severity="warning"} 1.0',
        'selfcheck_finding{check="security",finding="no_seccomp",severity="info"} 1.0',
        'selfcheck_security_pod_security_level{level="privileged"} 1.0',
        'selfcheck_check_status{check="security",status="degraded"} 1.0',
        'selfcheck_check_reason{check="security",reason="critical_findings"} 1.0',
    ):
        assert line in body, line
    assert "restricted" not in body
    if shutil.which("promtool"):
        lint = subprocess.run(
            ["promtool", "check", "metrics"],
            input=body,
            capture_output=True,
            text=True,
            check=False,
        )
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr


@pytest.mark.root
def test_metrics_of_a_confined_root_agent(host: Host) -> None:
    """Root without capabilities, with no-new-privs, seccomp and a read-only root: baseline.
    (Root, because ``serve`` imports prometheus_client, which UID 100 cannot read where the
    interpreter lives under a private home; ``check`` covers the restricted case as UID 100.)"""
    wrap = (
        *with_seccomp([]),
        "setpriv",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
    )
    body = scrape_in_scenario(host, IN_CONTAINER, wrap=wrap, pid_ns=True, read_only_root=True)
    assert 'selfcheck_security_pod_security_level{level="baseline"} 1.0' in body
    # Root alone is the chart's default and costs nothing: ok, with the note exported.
    assert 'selfcheck_check_status{check="security",status="ok"} 1.0' in body
    findings = [
        line for line in body.splitlines() if line.startswith('selfcheck_finding{check="security"')
    ]
    assert findings == [
        'selfcheck_finding{check="security",finding="root_not_needed",severity="info"} 1.0'
    ]
    assert "selfcheck_security_finding" not in body


@pytest.mark.root
def test_verbose_report_decodes_the_capability_sets() -> None:
    from tests.support.run import selfcheck

    run = selfcheck(["check", "--only", "security", "--verbose"], IN_CONTAINER)
    assert run.code == 1
    out = " ".join(run.stdout.split())  # the report aligns and wraps values
    for text in (
        "CapEff: CAP_",
        "CapPrm: CAP_",
        "CapBnd: CAP_",
        "CapAmb: (none)",
        " CAP_SYS_PTRACE,",
        "pod_security_level: privileged",
        "critical: CAP_SYS_PTRACE is in the effective set, in the host PID namespace",
        "Remove SYS_PTRACE from securityContext.capabilities.add",
    ):
        assert text in out, text


def test_explain_lists_every_finding_and_why() -> None:
    from tests.support.run import selfcheck

    run = selfcheck(["explain", "security"])
    assert run.code == 0
    flat = "".join(run.stdout.split())  # wrapping may split a line at any space or hyphen
    for fid, severity in SEVERITIES:
        assert f"{fid}({severity}):" in flat
    assert flat.count("(critical):") == 2
    for reason in ("findings", "critical_findings"):
        assert f"{reason}:" in run.stdout


# --- the judge on fixed input --------------------------------------------------------------

ROOT_RO = "1 0 254:0 / / ro,relatime - overlay overlay rw\n"


def _identity(**overrides: Any) -> Identity:
    base: dict[str, Any] = {
        "uid": 100,
        "gid": 101,
        "groups": (),
        "capabilities": CapabilitySets(),
        "no_new_privs": 1,
        "seccomp": 2,
    }
    base.update(overrides)
    return Identity(**base)


def _judge(identity: Identity, require: str = "", host_pid: bool | None = False) -> Any:
    """The audit's verdict as the runner publishes it (a required critical finding fails)."""
    config = make_config(IN_CONTAINER, SELFCHECK_REQUIRE=require)
    outcome = security.judge(identity, parse_mountinfo(ROOT_RO), host_pid, config)
    return settle(security.SPEC, outcome, bool(require), config)


def test_a_restricted_identity_has_no_finding() -> None:
    caps = CapabilitySets(bounding=mask_of(["NET_BIND_SERVICE"]))
    outcome = _judge(_identity(capabilities=caps))
    assert (outcome.status, outcome.reason, outcome.findings) == (Status.OK, Reason.OK, ())
    assert outcome.details["pod_security_level"] == "restricted"


def test_unknown_host_pid_makes_no_ptrace_claim() -> None:
    caps = CapabilitySets(effective=mask_of(["SYS_PTRACE"]), bounding=mask_of(["SYS_PTRACE"]))
    outcome = _judge(_identity(capabilities=caps), host_pid=None)
    assert [f.id for f in outcome.findings] == ["extra_capabilities"]
    assert outcome.details["host_pid"] is None


def test_garbled_status_is_reported_not_raised() -> None:
    outcome = _judge(_identity(capabilities=CapabilitySets(garbled=("CapEff",))))
    assert outcome.details["garbled_status_fields"] == ["CapEff"]


@pytest.mark.parametrize("require", ["", "security"])
def test_critical_finding_fails_only_when_required(require: str) -> None:
    caps = CapabilitySets(effective=mask_of(["SYS_ADMIN"]))
    outcome = _judge(_identity(capabilities=caps), require=require)
    assert outcome.reason == Reason.CRITICAL_FINDINGS
    assert outcome.status == (Status.FAILED if require else Status.DEGRADED)
    assert outcome.findings[0].severity == Severity.CRITICAL
    assert "SELFCHECK_REQUIRE=security" in outcome.remediation


def test_a_fully_privileged_root_process_gets_each_finding_with_its_severity() -> None:
    caps = CapabilitySets(effective=(1 << 64) - 1, bounding=(1 << 64) - 1)
    outcome = _judge(_identity(uid=0, capabilities=caps, no_new_privs=0, seccomp=0), host_pid=True)
    assert [(f.id, str(f.severity)) for f in outcome.findings] == [
        ("ptrace_with_host_pid", "critical"),
        ("sys_admin", "critical"),
        ("extra_capabilities", "warning"),
        ("root_not_needed", "info"),
        ("no_seccomp", "info"),
        ("privilege_escalation_allowed", "info"),
    ]
    assert "securityContext.capabilities" in outcome.findings[0].remediation
    assert "CAP_63" in outcome.findings[2].message  # bits beyond the table are still named


def test_unreadable_own_status_is_an_io_error(tmp_path: Path) -> None:
    """The viewed process's status is read from the procfs its eyes name: here an empty one."""
    config = make_config(IN_CONTAINER)
    eyes = dataclasses.replace(own_eyes("a procfs without the process"), proc=tmp_path)
    host = HostView(config.host_proc, config.cgroup_root, eyes)
    outcome = security.run(CheckContext(config, host, time.monotonic() + 2))
    assert (outcome.status, outcome.reason) == (Status.FAILED, Reason.IO_ERROR)
    assert "(ENOENT)" in outcome.message and "self/status" in outcome.message


def test_required_only_when_the_user_asks() -> None:
    checks = {"security": security.SPEC}
    features = {"DD_LOGS_ENABLED": "true", "DD_DOGSTATSD_ORIGIN_DETECTION": "true"}
    assert required_ids(make_config(features), checks) == set()
    assert required_ids(make_config(features, SELFCHECK_REQUIRE="security"), checks) == {"security"}


@pytest.mark.parametrize("level", ["privileged", "baseline", "restricted"])
def test_every_level_is_exported_and_nothing_else(level: str) -> None:
    from selfcheck.metrics import SnapshotCollector
    from selfcheck.model import Outcome, Result, Snapshot

    def snapshot(value: str) -> Snapshot:
        outcome = Outcome(Status.OK, Reason.OK, "", details={"pod_security_level": value})
        result = Result("security", outcome, False, 0.0, 0.0, 1.0)
        empty = Snapshot.empty(("security",), frozenset(), 0.0)
        return Snapshot(
            1, ("security",), frozenset(), {"security": result}, empty.counters, 1.0, 1.0
        )

    def samples(value: str) -> list[dict[str, str]]:
        collector = SnapshotCollector(
            lambda: snapshot(value), {"security": security.SPEC}, lambda _: True
        )
        family = next(
            f for f in collector.collect() if f.name == "selfcheck_security_pod_security_level"
        )
        return [s.labels for s in family.samples]

    assert samples(level) == [{"level": level}]
    assert samples("/etc/passwd") == []  # never a label outside the closed set
