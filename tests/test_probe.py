"""``selfcheck probe``: an exit code within its timeout, whatever the server does.

The kubelet gives an exec probe one second by default and kills it after that, which it
counts as a failure without the probe's own message. So the probe must give up by itself
under one overall deadline: against a listener that accepts and never answers, and
against one that trickles its answer a byte at a time (each byte well inside a per-read
timeout, the whole never), it must exit 1 saying why. These tests bound that only by the
subprocess timeout (no timed assertion: a loaded machine may take longer to start
Python); ``bench/probe.py`` measures the seconds.
"""

from __future__ import annotations

import pytest

from tests.support.run import selfcheck
from tests.support.standins import WedgedListener

BOUND = 20.0
"""Far below what the trickling peer takes to finish its answer (about a minute)."""
TRICKLE = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 300 + b"\r\nContent-Length: 3\r\n\r\nok\n"


@pytest.mark.parametrize("kind", ["live", "ready", "startup"])
def test_a_server_that_never_answers_gets_exit_1_within_the_timeout(kind: str) -> None:
    with WedgedListener() as wedged:
        run = selfcheck(["probe", kind, "--listen", f"127.0.0.1:{wedged.port}"], timeout=BOUND)
    assert run.code == 1
    assert "no answer within 1 s" in run.stderr, run.stderr
    assert run.stdout == ""


def test_a_server_trickling_its_answer_cannot_hold_the_probe() -> None:
    with WedgedListener(trickle=TRICKLE, step=0.2) as trickling:
        address = f"127.0.0.1:{trickling.port}"
        run = selfcheck(["probe", "live", "--listen", address], timeout=BOUND)
    assert run.code == 1
    assert "no answer within 1 s" in run.stderr, run.stderr


def test_the_timeout_flag_sets_the_deadline() -> None:
    with WedgedListener() as wedged:
        args = ["probe", "live", "--listen", f"127.0.0.1:{wedged.port}", "--timeout", "0.3"]
        run = selfcheck(args, timeout=BOUND)
    assert run.code == 1
    assert "no answer within 0.3 s" in run.stderr, run.stderr
