"""The Agent's PID-to-container rule composed from selfcheck's parts, for tests to call.

Production applies the rule in steps (``parse_proc_cgroup``, ``agent_cgroup_path``,
``container_id_from_path`` in ``selfcheck.host.cgroup``) because its callers keep the
intermediate path; the tests want the whole rule on a file's text, as the Agent applies it.
"""

from __future__ import annotations

from selfcheck.host.cgroup import agent_cgroup_path, container_id_from_path, parse_proc_cgroup


def container_id_from_proc_cgroup(text: str, cgroup_version: int) -> str | None:
    """The container ID the Agent gives a PID whose ``/proc/<pid>/cgroup`` reads ``text``.

    The whole rule of DataDog/datadog-agent pkg/util/cgroups/pid_mapper.go: take the line whose
    controller field is ``memory`` (cgroup v1, hybrid included) or empty (v2), keep only the
    last element of its path, drop ``*.mount`` and ``crio-conmon-*`` names, and match the
    Agent's regex (reader.go). ``None`` means the Agent sends that PID's metrics without
    container tags (and does not count an error).
    """
    path = agent_cgroup_path(parse_proc_cgroup(text), cgroup_version)
    return container_id_from_path(path) if path is not None else None
