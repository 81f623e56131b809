"""The helper's own side: a process holding exactly the Agent's credentials, serving requests.

Started by the server (``selfcheck.asagent``) as ``python -I -c`` with the credentials on
its command line, it takes them first (``selfcheck.host.become``), then answers one framed
request at a time on its standard input until that closes:

- ``cycle``: enter the Agent's root (``selfcheck.host.eyes.enter``), run the asked checks
  under its own ``Runner`` (their deadlines, the stagger, the cgroup tree cache and the map
  of checks stuck in a system call, all kept from one cycle to the next), read which socket
  inodes the Agent's processes hold (``/proc/<pid>/fd``, readable by the Agent's uid) and who
  answers at its DogStatsD and APM socket paths.
  The server's last delivery of the service checks comes with the request and is recorded in
  this process's ledger first, so ``dogstatsd_socket`` reports the Agent's receipt of them.
- ``deliver``: send the service checks to the DogStatsD socket inside the Agent's root and
  read the Agent's receipt (``selfcheck.delivery.Deliverer.deliver``).

Nothing but answers crosses back: standard error goes nowhere, and an exception is answered
with its type name only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from selfcheck import delivery
from selfcheck.asagent import (
    HEADER,
    LISTENER_SOCKETS,
    REQUEST_CAP,
    delivery_from_json,
    delivery_to_json,
    frame,
)
from selfcheck.config import Config, load
from selfcheck.host.agent import probe_file, socket_inodes
from selfcheck.host.become import become
from selfcheck.host.eyes import Credentials, Eyes, enter
from selfcheck.host.files import describe
from selfcheck.host.malloc import one_arena
from selfcheck.registry import CheckSpec, all_checks
from selfcheck.runner import Runner


def _config(overrides: Mapping[str, Any]) -> tuple[dict[str, CheckSpec], Config]:
    """This environment's configuration with the parent's settings (its flags included)."""
    checks = all_checks()
    values = dict(overrides)
    values["require"] = frozenset(values.get("require", ()))
    values["skip"] = frozenset(values.get("skip", ()))
    values["pod_logs_dir"] = Path(values.get("pod_logs_dir", "/var/log/pods"))
    return checks, load(frozenset(checks)).with_overrides(**values)


def held_sockets(proc: Path, pids: list[int]) -> dict[str, list[Any]]:
    """Socket inode and PID pairs the Agent's processes hold, and the PIDs not readable."""
    held: list[list[int]] = []
    unreadable: list[int] = []
    for pid in pids:
        try:
            held += [[inode, pid] for inode in sorted(socket_inodes(proc, pid))]
        except OSError:
            unreadable.append(pid)
    return {"held": held, "unreadable": unreadable}


def probe_sockets(eyes: Eyes) -> dict[str, list[str]]:
    """Who answers at the Agent's DogStatsD and APM socket paths, connected to as the Agent in
    its root: the server cannot follow that root to tell a stale file from a live socket."""
    probes = {}
    for setting, default, kind in LISTENER_SOCKETS:
        path = eyes.agent_env.get(setting) or default
        verdict, note = probe_file(str(eyes.root.at(path)), kind)
        probes[path] = [str(verdict), note]
    return probes


class Child:
    """The state a helper keeps between requests: its runner, and the Agent's eyes."""

    def __init__(self) -> None:
        self.runner: Runner | None = None
        self.overrides: dict[str, Any] | None = None
        self.eyes: Eyes | None = None
        self.deliverer: delivery.Deliverer | None = None

    def handle(self, asked: Mapping[str, Any]) -> dict[str, Any]:
        kind = asked.get("kind")
        if kind == "cycle":
            return self.cycle(asked)
        if kind == "deliver":
            return self.deliver(asked)
        return {"refused": "the helper was asked something it does not serve"}

    def _runner(self, overrides: dict[str, Any]) -> Runner:
        if self.runner is None or overrides != self.overrides:
            checks, config = _config(overrides)
            self.runner = Runner(config, checks, look=self._look)
            self.overrides = overrides
        return self.runner

    def _look(self) -> Eyes:
        assert self.eyes is not None
        return self.eyes

    def cycle(self, asked: Mapping[str, Any]) -> dict[str, Any]:
        proc = Path(asked["proc"])
        started = asked.get("started")  # the server's pin: an Agent restarted since is not judged
        entered = enter(proc, int(asked["pid"]), str(started) if started else None)
        if isinstance(entered, str) or entered.helper:
            return {"refused": entered if isinstance(entered, str) else "identity still differs"}
        self.eyes = entered
        runner = self._runner(dict(asked.get("overrides", {})))
        if asked.get("delivery") is not None:
            delivery.LEDGER.record(delivery_from_json(asked["delivery"]))
        ids = [str(cid) for cid in asked["ids"]]
        snapshot = runner.run_cycle(ids)
        if runner.agent_changed:  # the server re-checks its pin too, and runs the cycle again
            return {"refused": runner.agent_changed}
        verdicts = []
        for cid in ids:
            result = snapshot.results[cid]
            body = result.to_json()
            body["node_info"] = dict(result.outcome.node_info)
            verdicts.append(body)
        return {
            "verdicts": verdicts,
            "required": sorted(snapshot.required),
            "notes": list(snapshot.notes),
            "settings_from": runner.cycle_config.settings_from,
            "sockets": {
                **held_sockets(proc, [int(p) for p in asked.get("processes", [])]),
                "probes": probe_sockets(entered),
            },
        }

    def deliver(self, asked: Mapping[str, Any]) -> dict[str, Any]:
        runner = self.runner
        if runner is None:
            return {"refused": "the helper has not run a cycle yet"}
        if self.deliverer is None:
            self.deliverer = delivery.Deliverer(
                runner.config, ledger=delivery.Ledger(), target=runner.dogstatsd_target
            )
        items = [(str(check), str(text).encode()) for check, text in asked["items"]]
        done = self.deliverer.deliver(int(asked["generation"]), items, bool(asked["receipt"]))
        return {"delivery": delivery_to_json(done)}


def _read(fd: int, size: int) -> bytes | None:
    chunks, got = [], 0
    while got < size:
        chunk = os.read(fd, size - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(stdin: int, stdout: int, refusal: str) -> None:
    """Answer framed requests until standard input closes (the server went away)."""
    child = Child()
    while True:
        header = _read(stdin, HEADER.size)
        if header is None:
            return
        (size,) = HEADER.unpack(header)
        raw = _read(stdin, size) if size <= REQUEST_CAP else None
        if raw is None:
            return
        if refusal:
            answer: dict[str, Any] = {"refused": refusal}
        else:
            try:
                answer = child.handle(json.loads(raw))
            except Exception as error:  # never a traceback: the parent shows only this
                answer = {"refused": f"the helper failed: {type(error).__name__}"}
        _write(stdout, frame(answer))


def main() -> None:
    """Take the Agent's credentials first, then serve; a refusal when the kernel says no."""
    refusal = ""
    one_arena()
    try:
        become(Credentials.from_json(json.loads(sys.argv[1])))
    except OSError as error:
        refusal = f"the helper cannot take the Agent's credentials: {describe(error)}"
    except (ValueError, IndexError):
        refusal = "the helper was started without valid credentials"
    serve(sys.stdin.fileno(), sys.stdout.fileno(), refusal)
    os._exit(0)  # checks abandoned in a blocked system call must not hold the exit
