"""Every CLI command's exit code and output, as on-call people and the kubelet see them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from selfcheck import cli
from selfcheck.registry import all_checks, known_ids
from tests.support.run import REPO, base_env, python_command, selfcheck

FILE_CHECKS = "procfs,os_release"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_check_ok_prints_a_table_and_exits_0() -> None:
    run = selfcheck(["check", "--only", FILE_CHECKS], {"HOST_PROC": "/proc", "HOST_ETC": "/etc"})
    assert run.code == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["STATUS", "CHECK", "NEED", "MESSAGE"]
    assert any(line.startswith("ok") and " procfs " in line for line in lines)
    assert lines[-1].endswith("ready.")
    assert run.stderr == ""


def test_required_failure_exits_2_with_the_fix_under_it(tmp_path: Path) -> None:
    run = selfcheck(["check", "--only", "procfs"], {"HOST_PROC": str(tmp_path / "missing")})
    assert run.code == 2
    lines = run.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("FAILED"))
    fix = next(i for i, line in enumerate(lines) if line.startswith("    fix: "))
    assert "(ENOENT)" in " ".join(lines[row:fix])
    assert all(line.startswith(" " * 38) for line in lines[row + 1 : fix])  # under MESSAGE
    assert lines[fix].startswith("    fix: Mount the host's /proc")
    assert "NOT READY: procfs" in lines[-1]


def test_optional_failure_exits_1(tmp_path: Path) -> None:
    run = selfcheck(["check", "--only", "os_release"], {"HOST_ETC": str(tmp_path)})
    assert run.code == 1
    assert run.stdout.splitlines()[1].startswith("FAILED")


def test_json_is_the_status_schema() -> None:
    run = selfcheck(["check", "--json", "--only", FILE_CHECKS], {"HOST_PROC": "/proc"})
    doc = run.json
    assert set(doc) == {
        "generation",
        "ready",
        "completed_at",
        "node",
        "configuration_notes",
        "view",
        "checks",
    }
    assert {c["check"] for c in doc["checks"]} == {"procfs", "os_release"}
    for result in doc["checks"]:
        assert {"status", "reason", "message", "remediation", "details", "required"} <= set(result)


def test_verbose_shows_details() -> None:
    run = selfcheck(["check", "--verbose", "--only", "procfs"], {"HOST_PROC": "/proc"})
    assert "visible_processes:" in run.stdout


def test_bad_configuration_is_one_line_and_exit_3() -> None:
    for env, args in (
        ({"SELFCHECK_INTERVAL": "abc"}, ["check"]),
        ({"SELFCHECK_LISTEN": "0.0.0.0:70000"}, ["serve"]),
        ({"SELFCHECK_REQUIRE": "nope"}, ["list"]),
        ({}, ["check", "--only", "procfs,nope"]),
        ({}, ["check", "--timeout", "soon"]),
        ({"SELFCHECK_SERVICE_CHECKS": "maybe"}, ["serve"]),
        ({"SELFCHECK_SERVICE_CHECK_PREFIX": "a|b"}, ["serve"]),
    ):
        run = selfcheck(args, env)
        assert run.code == 3, (env, args, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert run.stderr.startswith("selfcheck: "), run.stderr
        assert "Traceback" not in run.stderr


def test_bad_usage_is_exit_3() -> None:
    for args in (["frobnicate"], ["probe", "sideways"], [], ["check", "--bogus"]):
        run = selfcheck(args)
        assert run.code == 3, args
        assert "Traceback" not in run.stderr


def test_explain_and_list() -> None:
    run = selfcheck(["explain", "procfs"])
    assert run.code == 0
    for reason in ("enoent", "eacces", "not_procfs", "not_host", "hidepid"):
        assert f"  {reason}: " in run.stdout
    assert "docs/checks/procfs.md" in run.stdout
    assert selfcheck(["explain", "nope"]).code == 3
    listing = selfcheck(["list"], {"DD_LOGS_ENABLED": "true", "SELFCHECK_SKIP": "os_release"})
    assert listing.code == 0
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "NEED", "CAPABILITY"]
    rows = {line.split()[0]: i for i, line in enumerate(lines) if not line.startswith(" ")}
    assert list(rows)[1:] == list(all_checks())  # every check, in the registry's order
    assert lines[rows["procfs"]].split()[1] == "required"
    assert lines[rows["os_release"]].split()[1] == "skipped"
    assert lines[rows["pod_logs"]].split()[1] == "required"
    why = " ".join(lines[rows["pod_logs"] + 1 : rows["agent_health"]]).split()
    assert " ".join(why).startswith("required when DD_LOGS_ENABLED")
    capability = lines[0].index("CAPABILITY")
    assert all(len(line) - len(line.lstrip()) == capability for line in lines if line[0] == " ")


def test_probe_without_a_server_fails_fast() -> None:
    # bounded by the subprocess timeout: a refused connection does not wait
    run = selfcheck(["probe", "live", "--listen", f"127.0.0.1:{_free_port()}"], timeout=10)
    assert run.code == 1
    assert "no answer" in run.stderr


def test_serve_answers_probes_and_stops_on_sigterm() -> None:
    port = _free_port()
    others = ",".join(sorted(known_ids() - {"procfs"}))  # no sockets of an Agent here
    env = base_env(
        {
            "SELFCHECK_LISTEN": f"127.0.0.1:{port}",
            "SELFCHECK_SKIP": others,
            "HOST_PROC": "/proc",
        }
    )
    proc = subprocess.Popen(
        [*python_command(), "serve"], env=env, cwd="/", stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        ready = None
        while time.monotonic() < deadline:
            ready = selfcheck(["probe", "ready", "--listen", f"127.0.0.1:{port}"], env)
            if ready.code == 0:
                break
            time.sleep(0.1)
        assert ready is not None and ready.code == 0, ready
        assert "[+]procfs ok" in ready.stdout
        assert selfcheck(["probe", "live"], env).code == 0
        assert selfcheck(["probe", "startup"], env).code == 0
        proc.send_signal(signal.SIGTERM)
        # stops without waiting for the next cycle (30 s away); the 1 s promise is bench/'s
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        logs = proc.stderr.read().splitlines()
        assert any('"msg":"serving"' in line for line in logs)
        assert any('"msg":"stopping"' in line for line in logs)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def test_serve_on_a_busy_port_is_exit_3() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        run = selfcheck(["serve"], {"SELFCHECK_LISTEN": f"127.0.0.1:{port}"}, timeout=20)
    assert run.code == 3
    assert "cannot listen" in run.stderr


def test_python_dash_m_and_console_script_agree() -> None:
    version = selfcheck(["--version"])
    assert version.code == 0 and version.stdout.startswith("selfcheck ")


class _Answers(BaseHTTPRequestHandler):
    """``GET``: 200 ``ok``, as selfcheck's probe paths answer. ``POST /api/v1/query``: a
    stand-in for Prometheus's query API with one node whose ``procfs`` is ok (what the fleet
    prints matters here, not Prometheus: tests/fleet runs the real one)."""

    def do_GET(self) -> None:
        self._answer(b"ok", "text/plain")

    def do_POST(self) -> None:
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        query, now = form["query"][0], time.time()
        one = [{"metric": {}, "value": [now, "1"]}]
        ok = [{"metric": {"check": "procfs", "reason": "ok"}, "value": [now, "1"]}]
        data: dict[str, object] = {"resultType": "vector", "result": []}
        if query == "time()":
            data = {"resultType": "scalar", "result": [now, str(now)]}
        elif query.startswith("count(group by (node)"):
            data["result"] = one
        elif query.startswith("count by (check, reason)"):
            data["result"] = ok
        body = json.dumps({"status": "success", "data": data}).encode()
        self._answer(body, "application/json")

    def _answer(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads exit codes, not this server's log."""


@pytest.fixture(scope="module")
def answering() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a server on a free port answering probes and fleet queries."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _into_a_pipe_without_reader(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``selfcheck ARGS`` writing into a real pipe whose reader has gone, as ``| head -3``'s
    has once it read its lines; closed before the command starts, so its first write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [*python_command(), *args],
            env=base_env({"HOST_PROC": "/proc", "HOST_ETC": "/etc"}),
            cwd="/",
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--only", FILE_CHECKS],
        ["check", "--only", FILE_CHECKS, "--json"],
        ["list"],
        ["explain", "procfs"],
        ["lint", "-f", str(REPO / "k8s" / "daemonset.yaml")],
        ["fleet", "--prometheus", "http://{where}"],
        ["probe", "live", "--listen", "{where}"],
        ["--help"],
        ["--version"],
    ],
    ids=["check", "check --json", "list", "explain", "lint", "fleet", "probe", "help", "version"],
)
def test_a_reader_gone_ends_the_command_quietly_with_141(args: list[str], answering: str) -> None:
    """As coreutils do: no message, the status of a command ended by SIGPIPE (128 + 13)."""
    run = _into_a_pipe_without_reader([arg.format(where=answering) for arg in args])
    assert (run.returncode, run.stderr) == (141, "")


def test_every_command_that_prints_is_tried_with_its_reader_gone() -> None:
    """A new subcommand gets a line in the test above (``serve`` writes only logs on stderr)."""
    from selfcheck.cli import build_parser

    tried = {"check", "list", "explain", "lint", "fleet", "probe"}
    assert set(build_parser().commands) - tried == {"serve"}


def _list_interrupted_in_a_lock(*_: object) -> int:
    """What an interrupt inside ``threading.Condition.wait`` leaves behind: the interrupt as the
    context of ``RuntimeError: release unlocked lock``."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise RuntimeError("release unlocked lock") from None


def _list_broken(*_: object) -> int:
    raise RuntimeError("release unlocked lock")


def test_an_error_raised_while_ctrl_c_unwinds_is_the_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C exits 130 quietly even when the interrupt surfaces as another error; the same
    error with no interrupt behind it stays an internal error, exit 3."""
    monkeypatch.setattr(cli, "cmd_list", _list_interrupted_in_a_lock)
    assert cli.main(["list"]) == 130
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(cli, "cmd_list", _list_broken)
    assert cli.main(["list"]) == 3
    assert "internal error: RuntimeError: release unlocked lock" in capsys.readouterr().err
