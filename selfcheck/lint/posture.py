"""The rules about privilege and wiring: ``security``, and lint's ``sidecar`` and ``agent_config``.

``security`` applies the runtime audit's rules (selfcheck/checks/security.py: its finding ids,
severities and fixes) to what the securityContext and volumeMounts declare, container by
container, and derives the Pod Security Standards level the whole pod needs. ``sidecar``
checks what makes the sidecar worth having: probes on ``/livez`` and ``/readyz``, and the
same identity, host mounts and settings as the agent container, without which its verdicts
are not the Agent's. ``agent_config`` reads every ``DD_*`` boolean and port the way the Agent
does, beyond the few the checks own.
"""

from __future__ import annotations

from collections.abc import Iterator

from selfcheck import agentpod
from selfcheck.checks.security import FINDINGS, RUNTIME_DEFAULT_CAPS, VOLUMES, Volume
from selfcheck.lint.catalog import agent_bool, bad_value_fix
from selfcheck.lint.pod import AGENT_ROLES, Container, Mount, PodTemplate
from selfcheck.lint.rules import Verdict, bool_setting, parse_port
from selfcheck.model import Finding, Outcome, Reason, Severity, Status

BASELINE_CAPS = frozenset(
    f"CAP_{c}"
    for c in (
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    )
)
"""What the Pod Security Standards' baseline level lets ``capabilities.add`` hold."""
LEVELS = ("privileged", "baseline", "restricted")
AUDITED = ("agent", "trace-agent", "process-agent")
"""system-probe needs its eBPF capabilities; the sidecar is audited by itself at run time."""
MIRRORED_ENV = {setting.name: setting.default for setting in agentpod.SETTINGS}
"""Every Agent variable selfcheck's configuration reads (selfcheck/config.py), with the value
selfcheck assumes when unset: the sidecar must carry the agent's value of each."""
BOOLEAN_NAMES = frozenset(
    {
        "DD_DOGSTATSD_NON_LOCAL_TRAFFIC",
        "DD_APM_NON_LOCAL_TRAFFIC",
        "DD_LEADER_ELECTION",
        "DD_COLLECT_KUBERNETES_EVENTS",
        "DD_DOGSTATSD_ORIGIN_DETECTION",
        "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT",
        "DD_ORIGIN_DETECTION_UNIFIED",
        "DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL",
        "DD_LOGS_CONFIG_K8S_CONTAINER_USE_FILE",
        "DD_LOGS_CONFIG_AUTO_MULTI_LINE_DETECTION",
        "DD_KUBELET_USE_API_SERVER",
        "DD_KUBELET_TLS_VERIFY",
        "DD_HOSTNAME_TRUST_UTS_NAMESPACE",
    }
)
OWNED = {"DD_DOGSTATSD_ORIGIN_DETECTION", "DD_LOGS_ENABLED", "DD_HEALTH_PORT"}
"""Judged by their check's rule (origin_detection, pod_logs, agent_health) in the agent, and
compared with the agent's by the ``sidecar`` rule in the sidecar."""


def _kind(name: str) -> str:
    if name in BOOLEAN_NAMES or name.endswith(("_ENABLED", "_ENABLE")):
        return "bool"
    return "port" if name.endswith("_PORT") else ""


def _finding(fid: str, message: str) -> Finding:
    spec = FINDINGS[fid]
    return Finding(fid, spec.severity, message, spec.remediation)


def _table_row(mount: Mount) -> Volume | None:
    """The mount's row of the Agent's table, by mount path, else by the chart's volume name."""
    for volume in VOLUMES:
        if mount.mount_path == volume.mount_path:
            return volume
    return next((v for v in VOLUMES if v.name == mount.volume), None)


def _capability_findings(pod: PodTemplate, c: Container) -> Iterator[Finding]:
    added = set(c.capabilities_added)
    if c.privileged:
        added |= {"CAP_SYS_PTRACE", "CAP_SYS_ADMIN"}
    if "CAP_SYS_PTRACE" in added and pod.host_pid:
        yield _finding(
            "ptrace_with_host_pid", f"{c.name}: CAP_SYS_PTRACE is added in the host PID namespace."
        )
    if "CAP_SYS_ADMIN" in added:
        yield _finding("sys_admin", f"{c.name}: CAP_SYS_ADMIN is added (or privileged: true).")
    extra = sorted(added - RUNTIME_DEFAULT_CAPS)
    if c.privileged:
        yield _finding("extra_capabilities", f"{c.name}: privileged: true holds every capability.")
    elif extra:
        yield _finding(
            "extra_capabilities", f"{c.name}: beyond the runtime default: {', '.join(extra)}."
        )


def _identity_findings(c: Container, logs: bool) -> Iterator[Finding]:
    if c.uid == 0:
        if logs:
            yield _finding("root_for_logs", f"{c.name}: runs as UID 0, needed for /var/log/pods.")
        else:
            yield _finding(
                "root_not_needed", f"{c.name}: runs as UID 0; no enabled feature needs it."
            )
    seccomp = c.security.get("seccompProfile")
    kind = seccomp.get("type") if isinstance(seccomp, dict) else None
    if kind in (None, "Unconfined"):
        yield _finding(
            "no_seccomp", f"{c.name}: no seccompProfile (the kubelet runs it Unconfined)."
        )
    if c.security.get("allowPrivilegeEscalation") is not False and not c.privileged:
        yield _finding(
            "privilege_escalation_allowed", f"{c.name}: allowPrivilegeEscalation is not false."
        )
    if c.security.get("readOnlyRootFilesystem") is not True:
        yield _finding("root_fs_writable", f"{c.name}: readOnlyRootFilesystem is not true.")


def _mount_findings(c: Container, v: Verdict) -> Iterator[Finding]:
    for mount in c.mounts:
        row = _table_row(mount) if mount.is_host else None
        if row is None or not row.read_only:
            continue
        if not mount.read_only:
            yield _finding(
                row.finding, f"{c.name}: {mount.mount_path} ({mount.volume}) is mounted read-write."
            )
        elif row.name == "cgroups" and mount.recursive_read_only not in ("Enabled", "IfPossible"):
            v.note(
                c.name,
                f"{mount.mount_path} is readOnly without recursiveReadOnly: on a cgroup v1 "
                "node (a manifest cannot tell) its controller submounts stay writable, a "
                "warning at run time (cgroups_submounts_writable); set recursiveReadOnly: "
                "IfPossible on this volumeMount",
            )


def pod_security_level(pod: PodTemplate) -> tuple[str, list[str]]:
    """The strictest Pod Security Standards level the pod's declared settings allow."""
    privileged: list[str] = [
        f"{f}: true"
        for f, on in (
            ("hostPID", pod.host_pid),
            ("hostNetwork", pod.host_network),
            ("hostIPC", pod.host_ipc),
        )
        if on
    ]
    host_volumes = [n for n, vol in pod.volumes.items() if "hostPath" in vol]
    if host_volumes:
        privileged.append(f"hostPath volumes: {', '.join(host_volumes)}")
    for c in pod.containers:
        if c.privileged:
            privileged.append(f"{c.name}: privileged: true")
        beyond = sorted(set(c.capabilities_added) - BASELINE_CAPS)
        if beyond:
            privileged.append(f"{c.name}: capabilities {', '.join(beyond)}")
    if privileged:
        return "privileged", privileged
    baseline = []
    for c in pod.containers:
        if c.security.get("runAsNonRoot") is not True or c.uid == 0:
            baseline.append(f"{c.name}: runAsNonRoot is not true")
        if c.security.get("allowPrivilegeEscalation") is not False:
            baseline.append(f"{c.name}: allowPrivilegeEscalation is not false")
        if "ALL" not in c.capabilities_dropped:
            baseline.append(f"{c.name}: capabilities.drop is not [ALL]")
    return ("baseline", baseline) if baseline else ("restricted", [])


def _grouped(findings: list[Finding]) -> list[Finding]:
    """One finding per id, naming every container that has it ("agent, trace-agent: ...")."""
    by_id: dict[str, list[Finding]] = {}
    for f in findings:
        by_id.setdefault(f.id, []).append(f)
    grouped = []
    for fid, same in by_id.items():
        names = ", ".join(f.message.split(":", 1)[0] for f in same)
        text = same[0].message.split(": ", 1)[-1]
        grouped.append(Finding(fid, same[0].severity, f"{names}: {text}", same[0].remediation))
    return grouped


def security(pod: PodTemplate, logs: bool, required: bool) -> Outcome:
    v = Verdict("security")
    for c in pod.containers:
        if c.role in AUDITED:
            v.findings += [*_capability_findings(pod, c), *_identity_findings(c, logs)]
            v.findings += _mount_findings(c, v)
        elif c.role == "system-probe":
            v.note(c.name, "not audited: it needs its eBPF capabilities (SYS_ADMIN, SYS_PTRACE...)")
    v.findings = _grouped(v.findings)
    level, forced_by = pod_security_level(pod)
    details: dict[str, object] = {"pod_security_level": level, "pod_security_forced_by": forced_by}
    enforced = pod.namespace_labels.get("pod-security.kubernetes.io/enforce")
    if enforced in LEVELS and LEVELS.index(enforced) > LEVELS.index(level):
        v.add(
            Status.FAILED,
            Reason.FINDINGS,
            "namespace",
            f"{pod.namespace} enforces Pod Security {enforced}, the pod needs {level}: the API "
            "server rejects every pod of it",
        )
    serious = [f for f in v.findings if f.severity != Severity.INFO]
    critical = [f for f in serious if f.severity == Severity.CRITICAL]
    if serious:
        status = Status.FAILED if critical and required else Status.DEGRADED
        reason = Reason.CRITICAL_FINDINGS if critical else Reason.FINDINGS
        ids = ", ".join(dict.fromkeys(f.id for f in serious))
        v.add(
            status,
            reason,
            "pod",
            f"{len(serious)} least-privilege findings ({len(critical)} critical): {ids}; "
            f"Pod Security level {level}",
        )
    return v.outcome(f"no least-privilege findings; Pod Security level {level}", **details)


def _probe_path(c: Container, kind: str) -> tuple[str, object] | None:
    probe = c.raw.get(kind)
    if not isinstance(probe, dict):
        return None
    get = probe.get("httpGet")
    if isinstance(get, dict):
        return str(get.get("path", "/")).split("?")[0], get.get("port")
    command = probe.get("exec", {}).get("command") if isinstance(probe.get("exec"), dict) else None
    if isinstance(command, list) and command[:2] == ["selfcheck", "probe"] and len(command) > 2:
        return {"live": "/livez", "ready": "/readyz", "startup": "/startupz"}.get(
            str(command[2]), str(command[2])
        ), "exec"
    return "", None


def _port_ok(c: Container, port: object) -> bool:
    if port == "exec":
        return True
    listen = c.setting("SELFCHECK_LISTEN") or "9750"
    want = listen.rsplit(":", 1)[-1]
    if isinstance(port, str) and not port.isdigit():
        ports = c.raw.get("ports")
        listed = ports if isinstance(ports, list) else []
        named = [p for p in listed if isinstance(p, dict) and p.get("name") == port]
        port = named[0].get("containerPort") if named else None
    return str(port) == want


def _probes(s: Container, v: Verdict) -> None:
    for kind, want, needed in (
        ("readinessProbe", "/readyz", True),
        ("livenessProbe", "/livez", True),
        ("startupProbe", "/startupz", False),
    ):
        found = _probe_path(s, kind)
        if found is None:
            if needed:
                v.add(Status.FAILED, Reason.PROBE_MISWIRED, s.name, f"has no {kind}")
            else:
                v.note(s.name, f"has no {kind}: readiness waits for the first cycle anyway")
        elif found[0] != want or not _port_ok(s, found[1]):
            v.add(
                Status.FAILED,
                Reason.PROBE_MISWIRED,
                s.name,
                f"{kind} asks {found[0] or 'no HTTP path'} on port {found[1]}, not {want} on "
                "the SELFCHECK_LISTEN port",
            )


def _host_mounts(c: Container) -> dict[str, tuple[str, bool]]:
    return {m.mount_path: (m.origin(""), m.read_only) for m in c.mounts if m.is_host}


def _mirror(pod: PodTemplate, s: Container, v: Verdict) -> None:
    agent = pod.agent
    pairs: list[tuple[str, object, object]] = [
        ("runAsUser", s.uid, agent.uid),
        ("runAsGroup", s.gid, agent.gid),
        ("capabilities.add", sorted(s.capabilities_added), sorted(agent.capabilities_added)),
        ("privileged", s.privileged, agent.privileged),
    ]
    for what, mine, theirs in pairs:
        if mine != theirs:
            v.add(
                Status.DEGRADED, Reason.DRIFT, s.name, f"{what} is {mine}, the agent's is {theirs}"
            )
    have, want = _host_mounts(s), _host_mounts(agent)
    read = {"/host", "/etc/passwd", "/var/run/datadog", "/var/log/pods"}
    for path, (origin, ro) in sorted(want.items()):
        if not any(path == r or path.startswith(r + "/") for r in read):
            continue
        if path not in have:
            v.add(
                Status.DEGRADED,
                Reason.DRIFT,
                s.name,
                f"lacks the agent's host mount {path} ({origin}{', ro' if ro else ''})",
            )
        elif have[path] != (origin, ro):
            v.add(
                Status.DEGRADED,
                Reason.DRIFT,
                s.name,
                f"mounts {path} as {have[path]}, the agent as {(origin, ro)}",
            )
    for path in sorted(set(have) - set(want)):
        v.add(
            Status.DEGRADED,
            Reason.DRIFT,
            s.name,
            f"mounts {path}, which the agent lacks: its verdict there is not the Agent's",
        )
    for name, default in MIRRORED_ENV.items():
        ours, agents = s.setting(name) or default, agent.setting(name) or default
        if _kind(name) == "bool":
            same = agent_bool(ours) == agent_bool(agents)
        else:
            same = ours.strip() == agents.strip()
        if not same:
            v.add(
                Status.DEGRADED,
                Reason.DRIFT,
                s.name,
                f"{name} is {ours[:60]!r}, the agent's is {agents[:60]!r}",
            )


def sidecar(pod: PodTemplate, config_error: str | None) -> Outcome:
    s = pod.sidecar
    if s is None:
        return Outcome(
            Status.SKIPPED,
            Reason.NOT_APPLICABLE,
            "no selfcheck container: nothing gates the rollout; the Agent "
            "containers were judged alone",
        )
    v = Verdict("sidecar")
    if config_error:
        v.add(Status.FAILED, Reason.BAD_VALUE, s.name, config_error)
    _probes(s, v)
    _mirror(pod, s, v)
    return v.outcome(
        "probes on /livez and /readyz; identity, host mounts and settings "
        "mirror the agent container"
    )


def agent_config(pod: PodTemplate) -> Outcome:
    v = Verdict("agent_config")
    checked = 0
    for c in pod.containers:
        for name, raw in c.env.items():
            kind = _kind(name) if name.startswith("DD_") else ""
            if not kind or (name in OWNED and c.role in ("agent", "selfcheck")):
                continue
            checked += 1
            bad = (
                (bool_setting(c, name)[1] is not None)
                if kind == "bool"
                else (parse_port(raw, 1) is None)
            )
            if bad:
                shown = f"={raw[:40]!r}" if name in BOOLEAN_NAMES or kind == "port" else ""
                v.add(
                    Status.DEGRADED,
                    Reason.BAD_VALUE,
                    c.name,
                    f"{name}{shown} is not a {'boolean' if kind == 'bool' else 'port'} to the "
                    "Agent's parser",
                )
                v.fixes.setdefault(Reason.BAD_VALUE, bad_value_fix(name, kind))
        hidden = [*c.unknown_env, *(f"envFrom {n}" for n in c.env_from)]
        if hidden and c.role in AGENT_ROLES:
            v.note(
                c.name,
                f"not in the manifest, not judged: {', '.join(hidden[:6])}"
                f"{' ...' if len(hidden) > 6 else ''}",
            )
    return v.outcome(f"{checked} DD_* booleans and ports parse as the Agent parses them")
