"""What a Datadog client inside a container sends as its origin (``c:`` field), and why.

Clients do their own origin detection (statsd/container_linux.go), and the Agent reads it when
``dogstatsd_origin_detection_client`` is on. The rules here follow DataDog/datadog-go
``statsd/container_linux.go`` and datadogpy ``datadog/dogstatsd/container.py`` (0.56):

1. **container ID** (``ci-<id>``): the first ``/proc/self/cgroup`` line of the form
   ``^\\d+:[^:]*:(.+)$`` whose path ends in a UUID (``-`` or ``_`` separated), a 64-hex ID or an
   ECS task ID, optionally followed by ``.scope``; used in the host cgroup namespace (and on v1
   by datadog-go);
2. **mountinfo** (datadog-go only, private namespace on v2): the rightmost
   ``<parent>/<64-hex>/...hostname`` path of a ``/proc/self/mountinfo`` line, unless the parent
   is containerd's ``sandboxes`` (a pod sandbox, not the container);
3. **cgroup inode** (``in-<inode>``): in a private cgroup namespace, the inode of the client's
   own cgroup directory as its ``/sys/fs/cgroup`` shows it: ``/sys/fs/cgroup/memory/<path>`` on
   v1 (datadogpy), ``/sys/fs/cgroup/<path>`` from the ``0::`` line on v2. There the path reads
   ``/``, so the inode is the container's cgroup directory on the host.

Which one the Agent recognises is another rule (the Agent's container-ID regex, and its inode
map: ``selfcheck.host.inodes``).
"""

from __future__ import annotations

import re

from selfcheck.host.cgroup import container_id_from_name

_UUID = "[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
# datadog-go's expLine and expContainerID (its ``.scope`` dot is unescaped: any character).
# Go's \d and \s are ASCII (\s is [\t\n\f\r ]); Python's would take other scripts' digits.
CGROUP_LINE_RE = re.compile(r"^[0-9]+:[^:]*:(.+)$")
CLIENT_ID_RE = re.compile(rf"({_UUID}|[0-9a-f]{{64}}|[0-9a-f]{{32}}-[0-9]+)(?:.scope)?$")
# datadog-go's cIDRegexpStr; the Garden branch ends in ``$`` before a ``/`` and never matches.
MOUNTINFO_RE = re.compile(
    r"([^\t\n\f\r /]+)/(([0-9a-f]{64})|([0-9a-f]{8}(-[0-9a-f]{4}){4}$))/[^\t\n\f\r ]*hostname"
)
SANDBOX_PARENT = "sandboxes"


def client_id_from_cgroup(text: str) -> str | None:
    """Step 1: the ID the client finds in its ``/proc/self/cgroup``, or ``None``.

    Lines split at ``\\n`` only, as Go's line scanner does (a trailing ``\\r`` dropped);
    ``$`` matches at the very end of the path only, as in Go (Python's ``$`` would also match
    before a trailing newline, which cannot occur inside a split line).
    """
    for raw in text.split("\n"):
        line = raw.removesuffix("\r")
        match = CGROUP_LINE_RE.match(line)
        if match is None:
            continue
        found = CLIENT_ID_RE.search(match.group(1))
        if found is not None:
            return found.group(1)
    return None


def client_id_from_mountinfo(text: str) -> str | None:
    """Step 2: datadog-go's mountinfo fallback, the rightmost match of the first line with one."""
    for line in text.split("\n"):
        matches = list(MOUNTINFO_RE.finditer(line))
        if not matches:
            continue
        last = matches[-1]
        if last.group(1) != SANDBOX_PARENT:
            return last.group(2)
    return None


def agent_recognises(client_id: str) -> bool:
    """Whether the Agent's own container-ID rule accepts the whole ID the client sends.

    A client can extract a pod UID (``/kubepods/pod<uid>``: 8-4-4-4-12) that the Agent's regex
    does not take for a container; the Agent can then tag it only if its tagger knows that
    string as a container, which no runtime does.
    """
    return container_id_from_name(client_id) == client_id
