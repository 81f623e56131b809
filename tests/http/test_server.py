"""Every endpoint over a real loopback socket: status codes, bodies, hostile clients."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.configs import FAST, make_config
from tests.support.fake_checks import FifoBlocker, failing, passing
from tests.support.serving import serving

IDS = frozenset({"fine", "broken", "optional_broken", "stuck"})


CHECKS = {
    "fine": passing(),
    "broken": failing(),
    "optional_broken": failing("optional_broken", False),
}


def test_before_the_first_cycle_startup_and_readiness_wait() -> None:
    with serving(make_config(FAST, checks=IDS), CHECKS) as s:
        assert s.get("/startupz")[0] == 503
        status, body, _ = s.get("/readyz")
        assert status == 503 and b"first check cycle not finished" in body
        assert s.get("/livez")[0] == 200


def test_readyz_reports_required_failures_and_honours_exclude() -> None:
    with serving(make_config(FAST, checks=IDS), CHECKS) as s:
        s.runner.run_cycle()
        assert s.get("/startupz")[0] == 200
        status, body, _ = s.get("/readyz")
        assert status == 503
        assert b"[-]broken failed: io_error" in body
        assert b"[+]fine" not in body  # only failures without ?verbose
        status, body, _ = s.get("/readyz?verbose")
        lines = body.decode().splitlines()
        assert "[+]fine ok" in lines
        assert "[-]broken failed: io_error" in lines
        assert "[-]optional_broken failed: io_error (optional)" in lines
        assert lines[-1] == "readyz check failed: required checks failing: broken"
        status, body, _ = s.get("/readyz?exclude=broken&verbose")
        assert status == 200
        assert b"broken failed" not in body.replace(b"optional_broken", b"")
        status, body, _ = s.get("/readyz?exclude=broken&exclude=nope")
        assert status == 200 and body == b"ok\n"
        assert len(s.get("/readyz?verbose")[1]) < 10 * 1024


def test_readyz_per_check_and_unknown_ids() -> None:
    with serving(make_config(FAST, checks=IDS), CHECKS) as s:
        s.runner.run_cycle()
        status, body, headers = s.get("/readyz/fine")
        assert (status, body) == (200, b"[+]fine ok\n")
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert s.get("/readyz/broken")[0] == 503
        assert s.get("/readyz/optional_broken")[0] == 503
        assert s.get("/readyz/nope")[0] == 404


def test_stale_results_make_readiness_fail() -> None:
    with serving(make_config(FAST, checks=IDS), {"fine": passing()}) as s:
        s.runner.run_cycle()
        assert s.get("/readyz")[0] == 200
        real = s.runner.clock
        s.runner.clock = lambda: real() + s.runner.config.stale_after + 5
        try:
            status, body, _ = s.get("/readyz")
            assert status == 503 and b"stale" in body
            assert s.get("/livez")[0] == 503
        finally:
            s.runner.clock = real


def test_status_metrics_and_not_found() -> None:
    with serving(make_config(FAST, checks=IDS), CHECKS) as s:
        s.runner.run_cycle()
        status, body, headers = s.get("/status")
        assert status == 200 and headers["content-type"] == "application/json"
        doc = json.loads(body)
        assert [c["check"] for c in doc["checks"]] == ["fine", "broken", "optional_broken"]
        assert doc["ready"] is False
        status, body, headers = s.get("/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert b'selfcheck_check_status{check="broken",status="failed"} 1.0' in body
        status, body, headers = s.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert headers["content-type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")
        assert s.get("/nope")[0] == 404
        assert s.get("/")[0] == 404


def test_head_has_headers_and_no_body() -> None:
    with serving(make_config(FAST, checks=IDS), CHECKS) as s:
        s.runner.run_cycle()
        reply = s.raw(b"HEAD /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length: 3\r\n" in reply
        assert reply.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"POST /livez HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
        (b"DELETE /readyz HTTP/1.1\r\n\r\n", b"405"),
        (b"GET /livez HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", b"400"),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b"431"),
        (b"GET /livez HTTP/1.1\r\n" + b"X-Big: " + b"b" * 9000 + b"\r\n\r\n", b"431"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"400"),
        (b"GET livez HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /livez SPDY/3\r\n\r\n", b"400"),
        (b"GET /livez HTTP/1.1\r\nbad header line\r\n\r\n", b"400"),
    ],
)
def test_malformed_requests_get_a_4xx_and_the_server_stays_up(
    request_bytes: bytes, code: bytes
) -> None:
    with serving(make_config(FAST, checks=IDS), CHECKS) as s:
        reply = s.raw(request_bytes)
        assert reply.split(b" ", 2)[1] == code, reply[:200]
        assert s.get("/livez")[0] == 200


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    with (
        serving(make_config(FAST, checks=IDS), CHECKS) as s,
        socket.create_connection(("127.0.0.1", s.port)) as c,
    ):
        for _ in range(3):
            c.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = c.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok\n")


def test_idle_connections_cannot_starve_a_probe() -> None:
    with serving(make_config(FAST, checks=IDS), CHECKS, max_connections=16) as s:
        idle = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(40)]
        try:
            for sock in idle[:10]:
                sock.sendall(b"GET /livez HTTP/1.1\r\n")  # a head that never ends
            deadline = time.monotonic() + 10
            while s.server.connections < 16:  # all it may hold: it is full of idle clients
                assert time.monotonic() < deadline, s.server.connections
                time.sleep(0.01)
            assert s.get("/livez")[0] == 200
            assert s.server.connections <= 16
        finally:
            for sock in idle:
                sock.close()


def test_idle_clients_are_closed_after_the_timeout() -> None:
    with (
        serving(make_config(FAST, checks=IDS), CHECKS, idle_timeout=0.3) as s,
        socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock,
    ):
        sock.sendall(b"GET /livez HTTP/1.1\r\n")
        assert sock.recv(10) == b""  # closed by the server, not by our timeout


def test_the_sweep_runs_only_while_connections_are_open() -> None:
    """An idle server sets no timer (one firing twice a second was a sixth of the pod's CPU
    at the default interval); the sweep starts again with the next client, which is still
    closed in time."""
    with serving(make_config(FAST, checks=IDS), CHECKS, idle_timeout=0.3) as s:
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
                sock.sendall(b"GET /livez HTTP/1.1\r\n")
                assert sock.recv(10) == b""
            deadline = time.monotonic() + 10
            while s.server.connections or s.server._sweeper is not None:
                assert time.monotonic() < deadline, (s.server.connections, s.server._sweeper)
                time.sleep(0.05)


def test_livez_keeps_answering_while_a_check_is_blocked_on_a_fifo(tmp_path: Path) -> None:
    blocker = FifoBlocker(tmp_path)
    checks = {"fine": passing(), "stuck": blocker.spec}
    try:
        with serving(make_config(FAST, checks=IDS), checks, start_runner=True) as s:
            assert blocker.entered.wait(5)
            answers = []
            for _ in range(10):
                answers.append(s.get("/livez")[0])
                time.sleep(0.1)
            assert answers == [200] * 10
            status, body, _ = s.get("/readyz/stuck")
            assert status == 503 and b"timeout" in body
            assert s.get("/readyz/fine")[0] == 200
    finally:
        blocker.release()


def test_promtool_accepts_the_exposition(tmp_path: Path) -> None:
    with serving(make_config(FAST, checks=IDS), CHECKS) as s:
        s.runner.run_cycle()
        body = s.get("/metrics")[1]
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout == b"" and lint.stderr == b""


def _serve_process(env: dict[str, str]) -> subprocess.Popen[str]:
    from tests.support.run import base_env, python_command

    return subprocess.Popen(
        [*python_command(), "serve"],
        env=base_env({"SELFCHECK_INTERVAL": "1", "SELFCHECK_SKIP": "security", **env}),
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _livez(host: str, port: int, family: socket.AddressFamily) -> bytes:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect((host, port))
                sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return sock.recv(64)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.bind(("::", 0))
        return int(sock.getsockname()[1])


def test_the_default_listen_address_is_dual_stack() -> None:
    """IPv6-only clusters probe and scrape the pod's IPv6 address; IPv4 ones its IPv4 one."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    port = _free_port()
    proc = _serve_process({"SELFCHECK_LISTEN": f":{port}"})
    try:
        assert _livez("::1", port, socket.AF_INET6).startswith(b"HTTP/1.1 200")
        assert _livez("127.0.0.1", port, socket.AF_INET).startswith(b"HTTP/1.1 200")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert f'"listen":"[::]:{port}"' in err


def test_without_ipv6_the_default_falls_back_to_ipv4(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel booted with ipv6.disable=1 has no AF_INET6: the same default serves IPv4."""
    from selfcheck.http import server as server_module

    monkeypatch.setattr(socket, "has_ipv6", False)
    sockets = server_module._listening_sockets("", 0)
    try:
        assert [s.family for s in sockets] == [socket.AF_INET]
        assert sockets[0].getsockname()[0] == "0.0.0.0"
    finally:
        for sock in sockets:
            sock.close()
