"""The server's side of the helper: its framed reader, its refusals, its one child at a time.

The helpers here are real child processes (``python -c``) started and read through the same
``Helpers`` code as the real one (``selfcheck.asagent_child``), each misbehaving in one way the
real one could (a traceback instead of a frame, a 10,000-deep array, 64 MiB, silence). The real
helper beside a real UID-100 Agent is in ``tests/test_whose_view.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from selfcheck import asagent
from selfcheck.asagent import (
    MAX_DEPTH,
    Helpers,
    RefusalError,
    child_environment,
    parse_answer,
)
from selfcheck.config import load
from selfcheck.delivery import Delivery, Receipt, Sent
from selfcheck.host.eyes import AGENT, Credentials, Eyes
from selfcheck.host.root import Root
from selfcheck.model import Reason, Status
from selfcheck.registry import all_checks
from selfcheck.runner import Runner

CHECKS = all_checks()
UID_100 = Credentials(100, 101, frozenset())
KEY: asagent.Key = (1, "1", UID_100)

READ_REQUEST = """
import os, struct, sys, time
size = struct.unpack(">I", os.read(0, 4))[0]
os.read(0, size)
"""


def misbehaving(answer: str) -> Helpers:
    """Helpers whose child reads one request, then runs ``answer`` (python)."""
    code = READ_REQUEST + answer
    return Helpers(command=lambda creds: [sys.executable, "-c", code])


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


GARBAGE = """
sys.stdout.buffer.write(b"Traceback (most recent call last): DD_API_KEY=secret\\n")
sys.stdout.flush()
time.sleep(60)
"""
DEEP = """
body = b"[" * 10000 + b"]" * 10000
sys.stdout.buffer.write(struct.pack(">I", len(body)) + body)
sys.stdout.flush()
time.sleep(60)
"""
HUGE = """
sys.stdout.buffer.write(struct.pack(">I", 64 * 1024 * 1024))
sys.stdout.buffer.write(b"x" * (64 * 1024 * 1024))
"""
SILENT = """
time.sleep(60)
"""
ECHO = """
while True:
    sys.stdout.buffer.write(struct.pack(">I", 2) + b"{}")
    sys.stdout.flush()
    size = struct.unpack(">I", os.read(0, 4) or b"\\0\\0\\0\\0")[0]
    if not size:
        break
    os.read(0, size)
"""


@pytest.mark.parametrize(
    ("behaviour", "why"),
    [
        (GARBAGE, "announced 1416782179 bytes, over the 4194304 byte cap"),
        (DEEP, f"nested deeper than {MAX_DEPTH} levels"),
        (HUGE, "announced 67108864 bytes, over the 4194304 byte cap"),
        (SILENT, "did not answer within 0.5 s"),
    ],
)
def test_a_helper_that_answers_anything_but_a_frame_is_refused_and_replaced(
    behaviour: str, why: str
) -> None:
    helpers = misbehaving(behaviour)
    with pytest.raises(RefusalError, match=why) as refusal:
        helpers.ask(KEY, {"kind": "cycle"}, 0.5 - asagent.START_ALLOWANCE)
    assert "secret" not in str(refusal.value)
    first = helpers.current
    assert first is not None and first.stuck_since is not None  # killed: never asked again
    assert first.reaped(10.0) and not alive(first.pid)  # and reaped, never left behind
    with pytest.raises(RefusalError, match=why):
        helpers.ask(KEY, {"kind": "cycle"}, 0.5 - asagent.START_ALLOWANCE)
    assert helpers.started == 2
    helpers.close()


def test_a_stuck_helper_is_never_doubled_until_it_is_reaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the child that did not answer is not reaped, every request is refused with why
    and no second child starts; once it is gone, the next request starts one.

    A child the kernel will not let go after ``SIGKILL`` (a thread in an uninterruptible
    wait) cannot be made on this machine: this kernel's freezer lets ``SIGKILL`` through and
    it has no device-mapper to suspend. So the real child is killed, and only its reaping is
    held back here, by ``Helper.reaped`` answering "not yet" until the test lets it go."""
    helpers = misbehaving(SILENT)
    monkeypatch.setattr(asagent.Helper, "reaped", lambda self, wait=0.0: False)
    with pytest.raises(RefusalError, match="did not answer"):
        helpers.ask(KEY, {"kind": "cycle"}, 0.5 - asagent.START_ALLOWANCE)
    for _ in range(3):
        with pytest.raises(RefusalError, match=r"still stuck .* no second helper"):
            helpers.ask(KEY, {"kind": "cycle"}, 0.5)
    assert helpers.started == 1
    monkeypatch.undo()
    stuck = helpers.current
    assert stuck is not None and stuck.reaped(10.0)  # the kill lands; the machine may be busy
    with pytest.raises(RefusalError, match="did not answer"):
        helpers.ask(KEY, {"kind": "cycle"}, 0.5 - asagent.START_ALLOWANCE)
    assert helpers.started == 2
    helpers.close()


def test_a_new_agent_gets_a_new_helper_and_the_old_one_ends() -> None:
    helpers = misbehaving(ECHO)
    for _ in range(3):
        assert helpers.ask(KEY, {"kind": "cycle"}, 2.0) == {}
    first = helpers.current
    assert first is not None and helpers.started == 1
    restarted = (KEY[0], "2", KEY[2])
    assert helpers.ask(restarted, {"kind": "cycle"}, 2.0) == {}
    assert helpers.started == 2 and not alive(first.pid)
    helpers.close()


def _uid_100_eyes() -> Eyes:
    """This process seen as a UID-100 Agent whose accesses a helper makes."""
    return Eyes(
        AGENT,
        Root(Path("/")),
        Path("/proc"),
        str(os.getpid()),
        "the Agent runs as uid 100",
        UID_100,
        helper=True,
        agent_pid=os.getpid(),
    )


def test_the_server_keeps_serving_on_its_own_view_when_the_helper_refuses() -> None:
    """A runner whose helper answers garbage publishes every cycle on its own view, with why."""
    config = load(frozenset(CHECKS)).with_overrides(check_timeout=0.5)
    eyes = _uid_100_eyes()
    runner = Runner(config, CHECKS, look=lambda: eyes)
    runner._helpers = misbehaving(GARBAGE)
    for generation in (1, 2):
        snapshot = runner.run_cycle(["procfs"])
        assert snapshot.generation == generation
        assert snapshot.eyes["view"] == "own"
        assert "over the 4194304 byte cap" in str(snapshot.eyes["why"])
        assert snapshot.results["procfs"].view == "own"
    runner.stop()


def test_the_helpers_environment_holds_no_secret() -> None:
    environ = {
        "DD_API_KEY": "secret",
        "DD_APP_KEY": "secret",
        "DD_DOGSTATSD_SOCKET": "/var/run/datadog/dsd.socket",
        "SELFCHECK_INTERVAL": "30",
        "PYTHONPATH": "/tmp/evil",
        "HOME": "/root",
        "MALLOC_ARENA_MAX": "4",
    }
    assert child_environment(environ) == {
        "DD_DOGSTATSD_SOCKET": "/var/run/datadog/dsd.socket",
        "SELFCHECK_INTERVAL": "30",
        "MALLOC_ARENA_MAX": "4",
    }


def test_the_helper_runs_isolated_from_the_directory_selfcheck_came_from() -> None:
    argv = asagent.command(UID_100)
    assert argv[1:3] == ["-I", "-c"]
    assert repr(str(Path(asagent.__file__).resolve().parents[1])) in argv[3]
    assert Credentials.from_json(json.loads(argv[4])) == UID_100
    assert asagent.unreadable_for(UID_100, asagent.import_root()) == ""


def test_a_package_closed_to_the_agents_uid_is_named() -> None:
    root = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        root.chmod(0o755)
        (root / "selfcheck").mkdir(mode=0o700)
        why = asagent.unreadable_for(UID_100, root)
        assert why == f"{root}/selfcheck (mode 0700) is closed to uid 100"
        (root / "selfcheck").chmod(0o755)
        assert asagent.unreadable_for(UID_100, root) == ""
    finally:
        shutil.rmtree(root)


def verdict(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "check": "procfs",
        "status": "failed",
        "reason": "enoent",
        "message": "/host/proc: No such file or directory (ENOENT)",
        "remediation": "Mount it.",
        "details": {"path": "/host/proc"},
        "duration_seconds": 0.01,
        "figures": {"visible_processes": 3},
        "node_info": {"kernel": "6.1"},
    }
    body.update(change)
    return body


def answer(*verdicts: dict[str, Any], **change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "verdicts": list(verdicts),
        "required": ["procfs"],
        "notes": [],
        "settings_from": "the Agent's own environment",
        "sockets": {
            "held": [[4242, 17]],
            "unreadable": [18],
            "probes": {"/var/run/datadog/dsd.socket": ["agent", ""]},
        },
    }
    body.update(change)
    return body


def test_a_valid_answer_becomes_the_agents_verdicts() -> None:
    parsed = parse_answer(answer(verdict()), ["procfs"], CHECKS, 100.0)
    result = parsed.verdicts["procfs"]
    assert (result.outcome.status, result.outcome.reason) == (Status.FAILED, Reason.ENOENT)
    assert (result.required, result.view) == (True, "agent")
    assert (result.started_at, result.finished_at) == (100.0, 100.01)
    assert result.outcome.figures == {"visible_processes": 3.0}
    assert parsed.sockets is not None and parsed.sockets.held == {4242: 17}
    assert parsed.sockets.unreadable == (18,)
    assert parsed.sockets.probes == {"/var/run/datadog/dsd.socket": ("agent", "")}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (answer(verdict(status="weird")), "status of procfs outside the closed set"),
        (answer(verdict(reason="because")), "reason of procfs outside the closed set"),
        (answer(verdict(check="no_such_check")), "a check it was not asked"),
        (answer(verdict(check="cgroups")), "a check it was not asked"),
        (answer(verdict(), verdict()), "a check it was not asked"),
        (answer(), "no verdict for procfs"),
        (answer(verdict(), required=["bogus"]), "requires a check id outside the registry"),
        (answer(verdict(duration_seconds=True)), "duration of procfs that is not a finite"),
        (answer(verdict(figures={"x": float("nan")})), "figure of procfs that is not a finite"),
        (answer(verdict(node_info={"secret": "x"})), "node_info of procfs outside"),
        (
            answer(verdict(findings=[{"id": "made_up", "severity": "info"}])),
            "finding id procfs does not declare",
        ),
        (answer(verdict(message=7)), "no valid 'message'"),
        (answer(verdict(), sockets={"held": [["a", 1]]}), "held sockets that are not ids"),
        (answer(verdict(), notes=[{}]), "a note that is not text"),
        (
            answer(verdict(), sockets={"held": [], "unreadable": [], "probes": {"/x": ["?", ""]}}),
            "socket probe verdict outside the closed set",
        ),
        ({"refused": "cannot enter\x1b the root\n"}, "cannot enter  the root $"),
    ],
)
def test_every_field_of_an_answer_is_validated_again(body: dict[str, Any], why: str) -> None:
    with pytest.raises(RefusalError, match=why):
        parse_answer(body, ["procfs"], CHECKS, 0.0)


def test_a_deep_answer_is_a_refusal_not_a_recursion_error() -> None:
    with pytest.raises(RefusalError, match="nested deeper"):
        asagent.decode(b"[" * 10_000 + b"]" * 10_000)
    with pytest.raises(RefusalError, match="nested deeper"):
        asagent.decode(b'{"a": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}")
    assert asagent.decode(b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}")


def test_the_delivery_crosses_the_pipe_and_back() -> None:
    delivery = Delivery(
        7,
        1.5,
        Sent(("procfs",), ("cgroups",), "eagain", "full"),
        Receipt(5000, 1, 1, True, ("procfs",), True),
        "read",
    )
    assert asagent.delivery_from_json(asagent.delivery_to_json(delivery)) == delivery
    bad = asagent.delivery_to_json(delivery) | {"sent": ["DD_API_KEY=secret"]}
    with pytest.raises(RefusalError, match="outside the registry"):
        asagent.delivery_from_json(bad)


def test_service_checks_go_through_the_helper_serving_the_agent_or_not_at_all() -> None:
    """No helper for this Agent: ``None`` (the server sends them itself, no helper is started for
    them); a helper answering anything but a delivery: every service check dropped, with why."""
    eyes = _uid_100_eyes()
    helpers = misbehaving(ECHO)
    items = [("procfs", b"_sc|selfcheck.procfs|0\n"), ("cgroups", b"_sc|selfcheck.cgroups|0\n")]
    assert asagent.deliver(helpers, eyes, 3, items, True) is None
    assert helpers.started == 0
    helpers.ask(asagent.key_of(eyes, asagent.start_time(eyes)), {"kind": "cycle"}, 2.0)
    done = asagent.deliver(helpers, eyes, 3, items, True)
    assert done is not None and done.generation == 3
    assert (done.sent.sent, done.sent.dropped) == ((), ("procfs", "cgroups"))
    assert done.sent.error == "the helper's answer has no valid 'delivery'"
    helpers.close()
