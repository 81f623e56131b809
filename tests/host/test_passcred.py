"""The SO_PASSCRED round trip against the real kernel, in this and in other PID namespaces.

The cross-namespace tests reproduce, with ``unshare``, the exact failure the Agent reports as
"matched PID for the process is 0 ... Is the agent in host PID mode?" (uds_linux.go).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.host import passcred
from selfcheck.host.passcred import (
    Credentials,
    RoundTrip,
    _reap,
    open_receiver,
    printable,
    proven_round_trip,
    receive,
    receiver_address,
    round_trip,
    send,
)
from tests.support.run import AS_AGENT_USER, REPO

RECEIVER = """
import json, sys
from selfcheck.host.passcred import open_receiver, receive
with open_receiver(b"\\0" + sys.argv[1].encode()) as sock:
    print("ready", flush=True)
    creds = receive(sock, sys.argv[2].encode(), 30)
print(json.dumps(None if creds is None else creds.pid), flush=True)
"""

SENDER = """
import os, sys
from selfcheck.host.passcred import send
send(b"\\0" + sys.argv[1].encode(), sys.argv[2].encode())
print(os.getpid(), flush=True)
"""


def _env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}


def _name() -> str:
    return f"selfcheck-test-{secrets.token_hex(6)}"


@pytest.fixture
def receiver_in_child_pid_namespace() -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """A receiver running as PID 1 of a new PID namespace (same network namespace as us)."""
    name, nonce = _name(), secrets.token_hex(8)
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c", RECEIVER, name, nonce],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc, name, nonce
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_round_trip_carries_the_childs_real_pid() -> None:
    trip = round_trip(5.0)
    assert trip.credentials is not None
    assert trip.sender_pid not in (0, os.getpid())
    assert trip.credentials.pid == trip.sender_pid
    assert trip.credentials.uid == os.getuid()
    assert trip.credentials.gid == os.getgid()
    assert trip.address.startswith("@")  # abstract: no file anywhere


def test_round_trips_do_not_collide() -> None:
    first, second = round_trip(5.0), round_trip(5.0)
    assert first.address != second.address
    assert first.sender_pid != second.sender_pid


def test_a_faithful_round_trip_is_kept_and_a_wrong_one_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel's answer cannot change under a running process once right; a wrong or
    failed answer can be the moment's (a sandbox, a load), so it is asked again."""
    monkeypatch.setattr(passcred, "_PROVEN", [])
    wrong = RoundTrip(4243, Credentials(0, 0, 0), "@00001")
    answers = iter([wrong])
    real = passcred.round_trip
    monkeypatch.setattr(passcred, "round_trip", lambda t: next(answers, None) or real(t))
    assert proven_round_trip(5.0) is wrong
    first = proven_round_trip(5.0)
    assert first.faithful and first.sender_pid != wrong.sender_pid
    assert proven_round_trip(5.0) is first  # no second child


def test_child_is_reaped() -> None:
    trip = round_trip(5.0)
    with pytest.raises(ChildProcessError):
        os.waitpid(trip.sender_pid, os.WNOHANG)


def test_a_child_that_never_exits_is_killed_and_reaped_by_the_deadline(tmp_path: Path) -> None:
    """Killed, not waited for: had ``_reap`` let it finish, the marker would exist. No clock
    is read, so a loaded machine cannot make this fail."""
    marker = tmp_path / "finished"
    pid = os.posix_spawnp("sh", ["sh", "-c", f"sleep 60; touch {marker}"], os.environ)
    _reap(pid, time.monotonic() + 0.2)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert not marker.exists()


def test_foreign_datagrams_are_skipped() -> None:
    with open_receiver() as sock:
        address = receiver_address(sock)
        send(address, b"not the nonce")
        send(address, b"nonce-1")
        creds = receive(sock, b"nonce-1", 5.0)
    assert creds is not None
    assert creds.pid == os.getpid()


def test_no_credentials_without_so_passcred() -> None:
    """What a kernel or sandbox that ignores SO_PASSCRED looks like: no SCM_CREDENTIALS."""
    with open_receiver(passcred=False) as sock:
        send(receiver_address(sock), b"n")
        assert receive(sock, b"n", 5.0) is None


def test_silence_times_out_and_does_not_hang() -> None:
    """The 0.2 s budget ends in ``TimeoutError``; a receive that ignored it would block for
    ever, so raising at all is the proof (no wall-clock bound to miss on a loaded machine)."""
    with open_receiver() as sock, pytest.raises(TimeoutError):
        receive(sock, b"never", 0.2)


def test_printable_address() -> None:
    assert printable(b"\x00abc") == "@abc"
    assert printable("/run/x.sock") == "/run/x.sock"


@pytest.mark.root
def test_round_trip_as_the_agents_non_root_user() -> None:
    code = (
        "import json; from selfcheck.host.passcred import round_trip; t = round_trip(5); "
        "print(json.dumps([t.sender_pid, t.credentials.pid, t.credentials.uid]))"
    )
    out = subprocess.run(
        [*AS_AGENT_USER, sys.executable, "-c", code],
        env=_env(),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    sender, pid, uid = json.loads(out.stdout)
    assert pid == sender != 0
    assert uid == 100


@pytest.mark.root
def test_receiver_in_child_namespace_gets_pid_zero_from_outside(
    receiver_in_child_pid_namespace: tuple[subprocess.Popen[str], str, str],
) -> None:
    """The Agent without hostPID: a sender it cannot see arrives with PID 0."""
    proc, name, nonce = receiver_in_child_pid_namespace
    send(b"\0" + name.encode(), nonce.encode())
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline()) == 0


@pytest.mark.root
def test_receiver_outside_sees_the_real_pid_of_a_sender_inside() -> None:
    """The Agent with hostPID: a sender in a pod's PID namespace arrives with its host PID."""
    name, nonce = _name(), secrets.token_hex(8)
    with open_receiver(b"\0" + name.encode()) as sock:
        sender = subprocess.Popen(
            [
                "unshare",
                "--pid",
                "--fork",
                "--kill-child",
                sys.executable,
                "-c",
                SENDER,
                name,
                nonce,
            ],
            env=_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            creds = receive(sock, nonce.encode(), 30.0)
            inner_pid = int(sender.communicate(timeout=30)[0])
        finally:
            if sender.poll() is None:
                sender.kill()
            sender.wait(10)
    assert inner_pid == 1  # what the sender believes its PID is
    assert creds is not None
    assert creds.pid not in (0, 1)  # what the kernel tells a receiver in the outer namespace


@pytest.mark.root
def test_works_on_a_read_only_root_filesystem() -> None:
    """The Agent's container has readOnlyRootFilesystem: the abstract socket needs no file."""
    code = (
        "from selfcheck.host.passcred import round_trip; t = round_trip(5); "
        "print(t.credentials.pid == t.sender_pid)"
    )
    script = (
        "mount --bind / / && mount -o remount,bind,ro / && "
        '! touch /tmp/selfcheck-ro-probe 2>/dev/null && exec "$PY" -c "$CODE"'
    )
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-euc", script],
        env={**_env(), "PY": sys.executable, "CODE": code},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
