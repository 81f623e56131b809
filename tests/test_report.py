"""What a person sees on a terminal: every line fits, columns align, errors name what was typed.

The commands run as a user runs them (a subprocess, no terminal, ``COLUMNS`` unset), on this
machine's real host view; a pseudo-terminal stands in for ``kubectl exec -t`` where the
width must follow the terminal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Iterator

import pytest

from selfcheck.model import Severity
from selfcheck.registry import all_checks
from tests.support.run import base_env, python_command, selfcheck

WIDTH = 100
MESSAGE_COLUMN = 38
"""Where MESSAGE starts: STATUS (8) and CHECK (16, the longest id) each with two spaces."""


def _too_wide(text: str, width: int = WIDTH) -> list[str]:
    return [line for line in text.splitlines() if len(line) > width]


def test_every_line_of_every_command_fits_100_columns() -> None:
    outputs = {
        "check": selfcheck(["check"]),
        "check --verbose": selfcheck(["check", "--verbose"]),
        "list": selfcheck(["list"], {"DD_LOGS_ENABLED": "true", "SELFCHECK_REQUIRE": "security"}),
        **{f"explain {cid}": selfcheck(["explain", cid]) for cid in all_checks()},
    }
    for name, run in outputs.items():
        assert run.code in (0, 1, 2), (name, run.stderr)
        assert run.stdout.count("\n") > 3, name
        assert _too_wide(run.stdout) == [], name


def test_summary_is_the_last_line_and_rows_align() -> None:
    run = selfcheck(["check"])
    lines = run.stdout.splitlines()
    assert lines[-2] == ""
    assert lines[-1].endswith(("ready.", ")")) or "NOT READY" in lines[-1]
    assert lines[0].index("MESSAGE") == MESSAGE_COLUMN
    rows = [line for line in lines[1:-2] if line and not line.startswith((" ", "view: "))]
    assert [row.split()[1] for row in rows] == list(all_checks())
    # a message continues under the MESSAGE column until the first "    fix: " or finding
    in_message = False
    for line in lines[1:-2]:
        if line.startswith("view: ") or not line:
            in_message = False
        elif not line.startswith(" "):
            in_message = True
        elif line[4] != " ":
            in_message = False
        elif in_message:
            assert line.startswith(" " * MESSAGE_COLUMN) and line[MESSAGE_COLUMN] != " ", line


def test_findings_collapse_to_one_line_each_unless_verbose() -> None:
    env = {"HOST_PROC": "/proc", "SELFCHECK_CONTAINERIZED": "true"}  # audited as a container
    findings = selfcheck(["check", "--json", "--only", "security"], env).check("security")
    count = len(findings.get("findings", []))
    if count == 0:
        pytest.skip("this machine's container has no least-privilege finding")
    short = selfcheck(["check", "--only", "security"], env).stdout.splitlines()
    severities = {str(severity) for severity in Severity}
    rows = [line for line in short if line.startswith("    ") and line.split()[0] in severities]
    assert [row.split()[1] for row in rows] == [f["id"] for f in findings["findings"]]
    assert "each finding's fix: selfcheck check --verbose --only security" in "\n".join(short)
    long = selfcheck(["check", "--verbose", "--only", "security"], env).stdout
    for finding in findings["findings"]:
        assert "".join(finding["remediation"].split()) in "".join(long.split())


def test_verbose_shows_each_duration_and_details_as_aligned_key_value_lines() -> None:
    run = selfcheck(["check", "--verbose", "--only", "procfs,cgroups"], {"HOST_PROC": "/proc"})
    lines = run.stdout.splitlines()
    durations = [line for line in lines if line.startswith("    duration: ")]
    assert len(durations) == 2
    assert all(line.endswith((" ms", " s")) for line in durations)
    block = lines[
        lines.index(durations[0]) : next(i for i, x in enumerate(lines) if "cgroups" in x)
    ]
    keys = [line for line in block if line.startswith("    ") and not line.startswith("     ")]
    assert {line.split(":")[0].strip() for line in keys} >= {"duration", "path", "pid1"}
    value_columns = {line.index(line.split(":", 1)[1].strip()) for line in keys}
    assert len(value_columns) == 1, keys  # aligned
    assert not any("{" in line or '["' in line for line in lines), "no JSON blobs"


def _set_size(fd: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))


def _on_a_terminal(args: list[str], columns: int) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal of ``columns`` as its standard output."""
    leader, follower = pty.openpty()
    _set_size(follower, columns)
    proc = subprocess.Popen(
        [*python_command(), *args],
        env=base_env(),
        cwd="/",
        stdout=follower,
        stderr=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    code = proc.wait(timeout=10)
    return code, b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [72, 140])
def test_width_follows_the_terminal(columns: int) -> None:
    code, out = _on_a_terminal(["check", "--verbose"], columns)
    assert code in (0, 1, 2), out
    assert _too_wide(out, columns) == []
    widest = max(len(line) for line in out.splitlines())
    assert widest > min(columns, WIDTH) - 10  # it used the room it had
    if columns > WIDTH:
        assert widest > WIDTH


def test_a_narrow_terminal_still_gets_60_columns() -> None:
    code, out = _on_a_terminal(["list"], 30)
    assert code == 0
    assert _too_wide(out, 60) == []
    assert max(len(line) for line in out.splitlines()) > 30


# --- manners ---------------------------------------------------------------------------------


def test_a_bad_flag_value_names_the_flag_and_a_bad_variable_names_the_variable() -> None:
    flag = selfcheck(["check", "--timeout", "0"])
    assert flag.code == 3
    assert flag.stderr == "selfcheck: --timeout: '0' is out of range (0.01-60 seconds)\n"
    variable = selfcheck(["check"], {"SELFCHECK_CHECK_TIMEOUT": "0"})
    assert variable.code == 3
    assert variable.stderr.startswith("selfcheck: configuration error: SELFCHECK_CHECK_TIMEOUT=")
    probe = selfcheck(["probe", "live", "--timeout", "0"])
    assert probe.code == 3
    assert probe.stderr.splitlines()[-1] == (
        "selfcheck probe: error: argument --timeout: '0' is out of range (more than 0, at most 60)"
    )
    listen = selfcheck(["serve", "--listen", "[::1"])
    assert listen.code == 3
    assert listen.stderr.startswith("selfcheck: --listen: "), listen.stderr
    assert len(listen.stderr.splitlines()) == 1


def test_each_subcommand_prints_its_own_usage_on_its_errors() -> None:
    for args, usage in (
        (["check", "--bogus"], "usage: selfcheck check "),
        (["probe", "sideways"], "usage: selfcheck probe "),
        (["explain"], "usage: selfcheck explain "),
        (["list", "extra"], "usage: selfcheck list"),
        (["frobnicate"], "usage: selfcheck "),
    ):
        run = selfcheck(args)
        assert run.code == 3, args
        assert run.stderr.startswith(usage), (args, run.stderr)
        assert "Traceback" not in run.stderr
    bogus = selfcheck(["check", "--bogus"])
    assert (
        bogus.stderr.splitlines()[-1] == "selfcheck check: error: unrecognized arguments: --bogus"
    )


def test_unknown_ids_are_listed_in_the_registry_order_everywhere() -> None:
    order = ", ".join(all_checks())
    for args, env in (
        (["explain", "nope"], {}),
        (["check", "--only", "nope"], {}),
        (["check", "--skip", "nope"], {}),
        (["list"], {"SELFCHECK_REQUIRE": "nope"}),
    ):
        run = selfcheck(args, env)
        assert run.code == 3, args
        assert run.stderr.rstrip().endswith(f"(known: {order})"), (args, run.stderr)
        assert len(run.stderr.splitlines()) == 1
        flag = next((arg for arg in args if arg.startswith("--")), None)
        if flag is not None:  # a flag's error names the flag, not "configuration"
            assert run.stderr.startswith(f"selfcheck: {flag}: unknown check id nope"), run.stderr


@pytest.fixture
def silent_peer() -> Iterator[socket.socket]:
    """A loopback listener that accepts and never answers (a wedged Agent port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


@contextlib.contextmanager
def _cli(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """The CLI in a subprocess (standard error piped), killed if the test leaves it running.

    SIGINT is given its default disposition in the child, as a terminal's foreground job has
    it: a suite started in the background (``cmd &``, ``nohup``) runs with SIGINT ignored,
    which a child would inherit, and Python installs no Ctrl-C handler where it starts
    ignored. A handler set here is reset to the default by ``execve``."""
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)  # caught: SIG_DFL at exec
    try:
        proc = subprocess.Popen(
            [*python_command(), *args],
            env=base_env(env),
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, ignored)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _interrupt(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    return proc.returncode, err


def _still_asking(connection: socket.socket) -> bool:
    """The check's request read, its side of the connection still open: it is waiting for the
    answer now (``agent_health`` gives up after its own 1.5 s, sooner than any deadline)."""
    connection.settimeout(10)
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = connection.recv(4096)
        if not chunk:
            return False
        request += chunk
    connection.setblocking(False)  # a peek that does not wait: data or EOF now, else open
    try:
        return connection.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True


def test_ctrl_c_during_check_exits_130_without_a_traceback(silent_peer: socket.socket) -> None:
    """Interrupted while the check waits on a wedged port. On a loaded machine the check can
    give up on its own before the test runs again; such a run proves nothing and is tried
    again, at most three times."""
    port = silent_peer.getsockname()[1]
    env = {"DD_HEALTH_PORT": str(port), "SELFCHECK_CHECK_TIMEOUT": "60"}
    silent_peer.settimeout(30)
    for _ in range(3):
        with _cli(["check", "--only", "agent_health"], env) as proc:
            connection, _ = silent_peer.accept()  # the check is running: interrupt it
            with connection:
                if not _still_asking(connection):
                    proc.wait(timeout=20)
                    continue
                code, err = _interrupt(proc)
        assert code == 130, err
        assert "Traceback" not in err
        return
    pytest.fail("the check gave up on its own before each of three interrupts")


def test_ctrl_c_stops_serve_with_130() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    skip = ",".join(cid for cid in all_checks() if cid != "procfs")
    env = {"SELFCHECK_LISTEN": f"127.0.0.1:{port}", "SELFCHECK_SKIP": skip, "HOST_PROC": "/proc"}
    with _cli(["serve"], env) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:  # the signal handlers are in place once it says so
            if '"msg":"serving"' in line:
                break
        code, err = _interrupt(proc)
    assert code == 130, err
    assert "Traceback" not in err
    assert '"msg":"stopping"' in err
