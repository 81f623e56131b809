"""``origin_detection``: every origin-detection path the Agent has, each proven on its own.

The Agent tags a DogStatsD packet (and an APM payload) with its sender's container by one of
several mechanisms (docs/checks/origin_detection.md), and each fails silently:

- **uds**: the ``SO_PASSCRED`` PID of the packet, mapped through ``/host/proc/<pid>/cgroup``
  (needs hostPID and ``/host/proc``; ``DD_DOGSTATSD_ORIGIN_DETECTION``). Proven in four steps:
  the PID namespace (``NSpid`` of ``<host proc>/self/status`` has one entry), the
  ``SO_PASSCRED`` round trip from a child, this container's own PID to its ID, and a bounded
  sample of host processes in container cgroups (the ratio);
- **client inode** (``c:in-<inode>``, datadog-go 5.x, datadogpy, Agent 7.51+): for the sampled
  container processes, the inode their client sends from a private cgroup namespace (the
  client rule, ``selfcheck.host.client_origin``) must resolve through the Agent's inode map of
  the host cgroup tree (``selfcheck.host.inodes``); needs ``/host/proc`` and the cgroups
  mount, not hostPID;
- **client container ID** (``c:ci-<id>``): the ID those clients find (cgroup, then mountinfo)
  must be one the Agent's container-ID rule recognises;
- **external data** and **entity ID**: reported as configured; proving them needs the kubelet.

The client mechanisms are read only with ``DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT``. The
**receipt** reads the Agent's own ``dogstatsd-uds`` counters around one datagram of
selfcheck's. The status follows the mechanisms the Agent's configuration enables; with none
enabled the check is ``skipped`` (``not_enabled``), like ``pod_logs`` with logs off, and its
message says what the node would give if they were. Reading (``gather``) is kept apart
from judging (``judge``), which never touches the host.
"""

from selfcheck.checks.origin_detection.check import SPEC, run

__all__ = ["SPEC", "run"]
