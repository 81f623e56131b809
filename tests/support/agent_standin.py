"""A stand-in for the Agent's DogStatsD listener and expvar port, counting like the Agent.

No Agent binary can run here, so this plays the two pieces the receipt reads, with the
Agent's counting rules (comp/dogstatsd/listeners/uds_common.go, uds_linux.go;
comp/agent/expvarserver): a ``unixgram`` socket with ``SO_PASSCRED`` at mode 0722, whose every
packet read moves ``dogstatsd-uds.Packets`` and ``Bytes``, and whose packets carrying PID 0 (the
kernel's answer when the sender is outside the receiver's PID namespace) move
``OriginDetectionErrors``; and ``/debug/vars`` on ``127.0.0.1:PORT`` with Go's expvar layout
(keys sorted).

Each packet is also parsed as the Agent's DogStatsD server does (comp/dogstatsd/server/impl
parse.go and parse_service_checks.go): split into messages on newlines, a ``_sc|`` message
read field by field on ``|`` and counted in the ``dogstatsd`` map as ``ServiceCheckPackets``
or, when rejected (fewer than two separators, an empty name, a status outside 0-3),
``ServiceCheckParseErrors``. The service checks it accepted are listed under
``standin-service-checks`` (a stand-in's own variable, for the tests to read).

The PID is the kernel's: run this under ``unshare --pid --fork`` and senders outside get 0.

    python -m tests.support.agent_standin SOCKET PORT [--drop] [--pad-mib N] [--reject-sc NAME]
        [--udp PORT [--udp-host ADDRESS]]

``--drop`` binds the socket and never reads it (the Agent reading another socket);
``--pad-mib`` adds a variable of N MiB that sorts before ``dogstatsd-uds``, as a busy Agent's
variables do. ``--reject-sc NAME`` (repeatable) counts the service check of that name as a
parse error instead, the way an Agent whose parser rejects it would. ``--udp PORT`` also
listens for DogStatsD on UDP (on ``--udp-host``, 127.0.0.1 by default: the Agent's loopback
without ``dogstatsd_non_local_traffic``), every packet read moving ``dogstatsd-udp.Packets`` and
``Bytes`` and parsed like the socket's (comp/dogstatsd/listeners/udp.go). Prints ``ready`` once
all answer; serves until standard input closes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_UCRED = struct.Struct("3i")


SERVICE_CHECK_STATUSES = frozenset({b"0", b"1", b"2", b"3"})
KEPT = 2000


def parse_service_check(message: bytes) -> dict[str, Any] | None:
    """The Agent's ``parseServiceCheck``: ``None`` where it returns an error."""
    if message.count(b"|") < 2 or len(message) < 4:
        return None
    name, status, *optional = message[4:].split(b"|")
    if not name or status not in SERVICE_CHECK_STATUSES:
        return None
    found: dict[str, Any] = {"name": name.decode(errors="replace"), "status": int(status)}
    for part in optional:
        if part.startswith(b"#"):
            found["tags"] = part[1:].decode(errors="replace").split(",")
        elif part.startswith(b"m:"):
            found["message"] = part[2:].decode(errors="replace")
        elif part.startswith(b"h:"):
            found["hostname"] = part[2:].decode(errors="replace")
    return found


class Counters:
    def __init__(self, pad_mib: int, reject: frozenset[str] = frozenset()) -> None:
        self.lock = threading.Lock()
        self.uds = {"Bytes": 0, "OriginDetectionErrors": 0, "PacketReadingErrors": 0, "Packets": 0}
        self.udp = {"Bytes": 0, "PacketReadingErrors": 0, "Packets": 0}
        self.parsed = {
            "EventPackets": 0,
            "MetricPackets": 0,
            "ServiceCheckPackets": 0,
            "ServiceCheckParseErrors": 0,
        }
        self.service_checks: list[dict[str, Any]] = []
        self.reject = reject
        self.padding = json.dumps(["x" * 1022] * (pad_mib * 1024)).encode()
        """Rendered once, as the bytes Go's expvar would write: encoding megabytes again for
        every request made the stand-in, not the Agent, the slow side of a loaded machine."""

    def body(self) -> bytes:
        """Go's ``/debug/vars`` layout: keys sorted, ``agent-padding`` first."""
        with self.lock:
            doc = {
                "cmdline": ["agent", "run"],
                "dogstatsd": dict(self.parsed),
                "dogstatsd-udp": dict(self.udp),
                "dogstatsd-uds": dict(self.uds),
                "memstats": {"Alloc": 1},
                "standin-service-checks": list(self.service_checks),
            }
        rest = json.dumps(doc, sort_keys=True).encode()
        return b'{"agent-padding": ' + self.padding + b", " + rest[1:]

    def packet(self, data: bytes, pid: int | None) -> None:
        with self.lock:
            self.uds["Packets"] += 1
            self.uds["Bytes"] += len(data)
            if pid == 0:
                self.uds["OriginDetectionErrors"] += 1
            for line in data.split(b"\n"):
                self._message(line.removesuffix(b"\r"))

    def udp_packet(self, data: bytes) -> None:
        with self.lock:
            self.udp["Packets"] += 1
            self.udp["Bytes"] += len(data)
            for line in data.split(b"\n"):
                self._message(line.removesuffix(b"\r"))

    def _message(self, message: bytes) -> None:
        if not message:
            return
        if message.startswith(b"_e{"):
            self.parsed["EventPackets"] += 1
        elif message.startswith(b"_sc"):
            found = parse_service_check(message)
            if found is None or found["name"] in self.reject:
                self.parsed["ServiceCheckParseErrors"] += 1
                return
            self.parsed["ServiceCheckPackets"] += 1
            self.service_checks = [*self.service_checks[-KEPT + 1 :], found]
        else:
            self.parsed["MetricPackets"] += 1


def datagrams(sock: socket.socket) -> Iterator[tuple[bytes, int | None]]:
    """Each datagram and the sender's PID from ``SCM_CREDENTIALS``, as the Agent's listener
    reads them (``None`` without credentials); ends when the socket is closed."""
    space = socket.CMSG_SPACE(_UCRED.size)
    while True:
        try:
            data, ancillary, _flags, _addr = sock.recvmsg(65536, space)
        except OSError:
            return
        pid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _UCRED.unpack(payload[: _UCRED.size])[0]
        yield data, pid


def serve_socket(sock: socket.socket, counters: Counters) -> None:
    for data, pid in datagrams(sock):
        counters.packet(data, pid)


def serve_udp(sock: socket.socket, counters: Counters) -> None:
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        counters.udp_packet(data)


def make_handler(counters: Counters) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = counters.body() if self.path == "/debug/vars" else b"{}"
            self.send_response(200 if self.path == "/debug/vars" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("socket")
    parser.add_argument("port", type=int)
    parser.add_argument("--drop", action="store_true")
    parser.add_argument("--pad-mib", type=int, default=0)
    parser.add_argument("--reject-sc", action="append", default=[])
    parser.add_argument("--udp", type=int, default=None)
    parser.add_argument("--udp-host", default="127.0.0.1")
    args = parser.parse_args()
    path = Path(args.socket)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    counters = Counters(args.pad_mib, frozenset(args.reject_sc))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(str(path))
    os.chmod(path, 0o722)
    if not args.drop:
        threading.Thread(target=serve_socket, args=(sock, counters), daemon=True).start()
    if args.udp is not None:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((args.udp_host, args.udp))
        threading.Thread(target=serve_udp, args=(udp, counters), daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(counters))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
    server.shutdown()
    sock.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


if __name__ == "__main__":
    main()
