"""What ``selfcheck serve`` holds: the libraries whose job is done elsewhere stay out of it.

A fresh interpreter runs the serving path's own pieces against real peers on loopback: the web
configuration loaded as the server loads it, a listening socket on ``127.0.0.1``, the Agent's
expvar read over TCP (a bare loopback socket plays it: the Agent cannot run here) and a TCP
connect, then names the modules it holds. PyYAML is read in a child
(``selfcheck.http.yamldoc``), psutil is not used (``selfcheck.host.agent`` reads procfs), and
plain ASCII host names never load the IDNA codec (``selfcheck.host.sockets.ascii_host``).
A real ``selfcheck serve`` runs its checks' threads without an arena of their own each.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.arenas import glibc_heaps
from tests.support.run import base_env, python_command, stop

HASH = "$2b$04$" + "a" * 53

SERVING = """
import json, socket, sys, threading
from pathlib import Path

def answer(peer):
    body = b'{"dogstatsd-uds": {"Packets": 3}}'
    while True:
        conn, _ = peer.accept()
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body)
            conn.sendall(head + body)

peer = socket.create_server((b"127.0.0.1", 0))
threading.Thread(target=answer, args=(peer,), daemon=True).start()
port = peer.getsockname()[1]

from selfcheck.host import agent, expvar, sockets
from selfcheck.http import server, webconfig
config, _ = webconfig.load(Path(sys.argv[1]))
listening = server._listening_sockets("127.0.0.1", 0)
read = expvar.read_uds_vars(port, sockets.Deadline(5))
sockets.connect_tcp("127.0.0.1", port, sockets.Deadline(5)).close()
agent.discover(Path("/proc"), "node")
held = [m for m in ("yaml", "psutil", "encodings.idna") if m in sys.modules]
print(json.dumps([list(config.users), read.get("Packets"), held]))
"""


def test_the_serving_path_holds_no_yaml_psutil_or_idna(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: {HASH}\n")
    done = subprocess.run(
        [sys.executable, "-c", SERVING, str(web)],
        env=base_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [["prometheus"], 3, []]


def _generation(port: int) -> int:
    """The cycles ``/status`` has published, 0 while the server does not answer yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as reply:
            return int(json.load(reply).get("generation", 0))
    except OSError:
        return 0


def test_serve_runs_its_threads_in_glibcs_main_arena() -> None:
    """Two cycles of checks in their threads, and no arena of their own
    (``selfcheck.host.malloc``): without the limit each thread would hold one."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [*python_command(), "serve"],
        env=base_env({"SELFCHECK_INTERVAL": "1", "SELFCHECK_LISTEN": f"127.0.0.1:{port}"}),
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while _generation(port) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "no second cycle"
            time.sleep(0.1)
        assert len(os.listdir(f"/proc/{proc.pid}/task")) > 2
        assert glibc_heaps(proc.pid) == 0
    finally:
        stop(proc)
