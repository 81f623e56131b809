"""Checks built inside tests to drive the runner and server into exact states.

These are not stand-ins for a real component: they are the unit under test's inputs (a
check that blocks in ``open()`` on a FIFO with no writer, one that raises, one that fails).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from selfcheck.context import CheckContext
from selfcheck.model import Outcome, Reason, Status, ok
from selfcheck.registry import CheckSpec


def spec(cid: str, run: object, required: bool = False) -> CheckSpec:
    return CheckSpec(
        id=cid,
        title=cid,
        run=run,  # type: ignore[arg-type]
        proves="test",
        why="test",
        remediations={Reason.IO_ERROR: f"fix {cid}"},
        required_by_default=lambda config: required,
        required_because="test",
        figures={"answer": "A test figure."},
    )


def passing(cid: str = "fine", required: bool = True) -> CheckSpec:
    return spec(cid, lambda ctx: ok(f"{cid} works", figures={"answer": 42}), required)


def failing(cid: str = "broken", required: bool = True) -> CheckSpec:
    def run(ctx: CheckContext) -> Outcome:
        return Outcome(Status.FAILED, Reason.IO_ERROR, f"{cid} is broken", f"fix {cid}")

    return spec(cid, run, required)


def raising(cid: str = "buggy") -> CheckSpec:
    def run(ctx: CheckContext) -> Outcome:
        raise ZeroDivisionError("bug")

    return spec(cid, run, False)


class FifoBlocker:
    """A check that blocks in the kernel: ``open()`` of a FIFO that has no writer yet."""

    def __init__(self, directory: Path, cid: str = "stuck") -> None:
        self.path = directory / f"{cid}.fifo"
        os.mkfifo(self.path)
        self.cid = cid
        self.entered = threading.Event()
        self.spec = spec(cid, self._run, required=False)

    def _run(self, ctx: CheckContext) -> Outcome:
        self.entered.set()
        with self.path.open("rb") as fifo:  # blocks until release() opens the other end
            fifo.read()
        return ok("released")

    def release(self) -> None:
        """Unblock the stuck reader, and let later runs read a plain file instead."""
        fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        self.path.unlink()
        self.path.write_bytes(b"")
        os.close(fd)
