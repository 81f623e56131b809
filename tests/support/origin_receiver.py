"""The Agent's side of origin detection, applied to what real clients actually send.

No Agent binary can run here, so this receiver plays its two sockets and applies the Agent's
rules (docs/checks/origin_detection.md) to each packet that arrives, using selfcheck's ports of
those rules:

- DogStatsD, a ``unixgram`` socket with ``SO_PASSCRED`` (mode 0722): the kernel's PID of the
  packet, mapped through ``<host proc>/<pid>/cgroup`` with the Agent's PID rule (PID 0: no
  container, the Agent's "matched PID for the process is 0"); and the ``|c:`` field the
  client wrote: ``ci-<id>`` (or a bare or ``cid-`` ID) taken if the Agent's regex recognises
  it, ``in-<inode>`` resolved through the Agent's inode map of the host cgroup tree;
- APM, an HTTP server on a stream socket: the connection's ``SO_PEERCRED`` PID mapped the
  same way (pkg/trace/api/container_linux.go), and the ``Datadog-Entity-ID`` /
  ``Datadog-Container-ID`` headers resolved like ``c:``.

    python -m tests.support.origin_receiver DIR HOST_PROC CGROUP_ROOT

Binds ``DIR/dsd.socket`` and ``DIR/apm.socket``, prints ``ready``, one ``event <kind> <who>``
line per packet (``who`` is the ``client:<name>`` tag or service the client put in it), and on
standard input's end one ``result <json>`` line: every packet with what the Agent would tag.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import socketserver
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from selfcheck.host.cgroup import detect_layout, read_proc_cgroup
from selfcheck.host.client_origin import agent_recognises
from selfcheck.host.inodes import agent_hierarchy, build_inode_map
from selfcheck.host.procfs import read_mountinfo
from tests.support.agent_standin import datagrams
from tests.support.cgroup_rule import container_id_from_proc_cgroup

_UCRED = struct.Struct("3i")
_WHO = re.compile(rb"client-([a-z]+)")


class Agent:
    """The Agent's lookups over the host this receiver is given."""

    def __init__(self, host_proc: Path, cgroup_root: str) -> None:
        self.host_proc = host_proc
        layout = detect_layout(read_mountinfo(), os.path.realpath(cgroup_root))
        self.version = layout.agent_version if layout.version != "none" else None
        self.hierarchy = agent_hierarchy(layout)
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def by_pid(self, pid: int | None) -> str | None:
        if not pid or self.version is None:
            return None
        try:
            text = read_proc_cgroup(self.host_proc, pid)
        except OSError:
            return None
        return container_id_from_proc_cgroup(text, self.version)

    def by_origin(self, origin: str | None) -> str | None:
        """A client-sent origin (``ci-``, ``cid-``, bare ID, ``in-``; comma lists)."""
        for part in (origin or "").split(","):
            if part.startswith("in-") and part[3:].isdigit():
                if self.hierarchy is None:
                    continue
                found = build_inode_map(self.hierarchy).by_inode.get(int(part[3:]))
            else:
                cid = part.removeprefix("ci-").removeprefix("cid-")
                found = cid if cid and agent_recognises(cid) else None
            if found:
                return found
        return None

    def record(self, kind: str, data: bytes, pid: int | None, origin: str | None) -> None:
        who = _WHO.search(data)
        event = {
            "kind": kind,
            "who": who.group(1).decode() if who else None,
            "pid": pid,
            "origin": origin,
            "uds_container": self.by_pid(pid),
            "client_container": self.by_origin(origin),
        }
        with self.lock:
            self.events.append(event)
        print(f"event {kind} {event['who']}", flush=True)


def dogstatsd_origin(data: bytes) -> str | None:
    """The ``c:`` field of the first line (datadogpy writes ``...|#tags|c:<origin>``)."""
    for field in data.split(b"\n", 1)[0].split(b"|")[1:]:
        if field.startswith(b"c:"):
            return field[2:].decode()
    return None


def serve_dogstatsd(sock: socket.socket, agent: Agent) -> None:
    for data, pid in datagrams(sock):
        agent.record("dogstatsd", data, pid, dogstatsd_origin(data))


def apm_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if "traces" in self.path:
                creds = self.request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
                origin = self.headers.get("Datadog-Entity-ID") or self.headers.get(
                    "Datadog-Container-ID"
                )
                agent.record("apm", body, _UCRED.unpack(creds)[0], origin)
            reply = b'{"rate_by_service": {}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def do_PUT(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def do_GET(self) -> None:
            self._answer()

        def address_string(self) -> str:
            return "apm.socket"

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


class _UnixHTTP(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main() -> None:
    directory, host_proc, cgroup_root = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    agent = Agent(host_proc, cgroup_root)
    dsd, apm = directory / "dsd.socket", directory / "apm.socket"
    for path in (dsd, apm):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(str(dsd))
    server = _UnixHTTP(str(apm), apm_handler(agent))
    for path in (dsd, apm):
        path.chmod(0o722 if path == dsd else 0o777)
    threading.Thread(target=serve_dogstatsd, args=(sock, agent), daemon=True).start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
    server.shutdown()
    sock.close()
    with agent.lock:
        print("result " + json.dumps(agent.events), flush=True)


if __name__ == "__main__":
    main()
