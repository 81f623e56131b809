"""A stand-in for the Agent's DogStatsD listener and expvar port, counting like the Agent.

No Agent binary can run here, so this plays the two pieces the receipt reads, with the
Agent's counting rules (comp/dogstatsd/listeners/uds_common.go, uds_linux.go;
comp/agent/expvarserver): a ``unixgram`` socket with ``SO_PASSCRED`` at mode 0722, whose every
packet read moves ``dogstatsd-uds.Packets`` and ``Bytes``, and whose packets carrying PID 0 (the
kernel's answer when the sender is outside the receiver's PID namespace) move
``OriginDetectionErrors``; and ``/debug/vars`` on ``127.0.0.1:PORT`` with Go's expvar layout
(keys sorted).

The PID is the kernel's: run this under ``unshare --pid --fork`` and senders outside get 0.

    python -m tests.support.agent_standin SOCKET PORT [--drop] [--pad-mib N]

``--drop`` binds the socket and never reads it (the Agent reading another socket);
``--pad-mib`` adds a variable of N MiB that sorts before ``dogstatsd-uds``, as a busy Agent's
variables do. Prints ``ready`` once both answer; serves until standard input closes.
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

_UCRED = struct.Struct("3i")


class Counters:
    def __init__(self, pad_mib: int) -> None:
        self.lock = threading.Lock()
        self.uds = {"Bytes": 0, "OriginDetectionErrors": 0, "PacketReadingErrors": 0, "Packets": 0}
        self.padding = ["x" * 1022] * (pad_mib * 1024)

    def body(self) -> bytes:
        with self.lock:
            doc = {
                "agent-padding": self.padding,
                "cmdline": ["agent", "run"],
                "dogstatsd": {"MetricPackets": self.uds["Packets"]},
                "dogstatsd-uds": dict(self.uds),
                "memstats": {"Alloc": 1},
            }
        return json.dumps(doc, sort_keys=True).encode()

    def packet(self, data: bytes, pid: int | None) -> None:
        with self.lock:
            self.uds["Packets"] += 1
            self.uds["Bytes"] += len(data)
            if pid == 0:
                self.uds["OriginDetectionErrors"] += 1


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
    args = parser.parse_args()
    path = Path(args.socket)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    counters = Counters(args.pad_mib)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(str(path))
    os.chmod(path, 0o722)
    if not args.drop:
        threading.Thread(target=serve_socket, args=(sock, counters), daemon=True).start()
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
