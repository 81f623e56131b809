"""The Agent's endpoints for the benchmarks, in their own process: ``_agent.py DIR``.

Prints one JSON line with the environment that points ``selfcheck`` at them, then serves
until its standard input closes. They are the test suite's stand-ins (the Agent itself
cannot run here), see ``tests/support/standins.py``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.standins import AgentHTTPStandIn, TraceAgentStandIn


@contextlib.contextmanager
def counting_dogstatsd(path: Path) -> Iterator[int]:
    """The DogStatsD socket and expvar port counting like the Agent (origin_detection's receipt)."""
    from http.server import ThreadingHTTPServer

    from tests.support.agent_standin import Counters, make_handler, serve_socket

    counters = Counters(0)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(str(path))
    path.chmod(0o722)
    threading.Thread(target=serve_socket, args=(sock, counters), daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(counters))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        sock.close()


def main(directory: Path) -> None:
    dsd, apm = directory / "dsd.socket", directory / "apm.socket"
    with (
        counting_dogstatsd(dsd) as expvar_port,
        TraceAgentStandIn(apm),
        AgentHTTPStandIn() as agent,
    ):
        env = {
            "DD_DOGSTATSD_SOCKET": str(dsd),
            "DD_APM_RECEIVER_SOCKET": str(apm),
            "DD_HEALTH_PORT": str(agent.port),
            "DD_EXPVAR_PORT": str(expvar_port),
        }
        print(json.dumps(env), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
