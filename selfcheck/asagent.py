"""The server's side of the helper that holds exactly the Agent's credentials.

Whether the Agent may open a file or connect to a socket depends on its uid, gid and
supplementary groups, and so does whether its root at ``/proc/<pid>/root`` can be followed at
all (fs/proc/base.c: the reader's fsuid and fsgid must match the target's, or it needs
``CAP_SYS_PTRACE``). When selfcheck's own identity differs (a root node-mode pod beside a
UID-100 Agent, a drifted sidecar), the runner asks one long-lived helper process
(``selfcheck.asagent_child``) to run the checks in the Agent's root, and to send the service
checks to the Agent's socket.

- **One per Agent.** A helper serves one ``Key``: the Agent's PID, its start time (field 22
  of ``/proc/<pid>/stat``) and the whole ``Credentials`` value. When any of them changes the
  helper is stopped and the next request starts a new one; in between it keeps its runner, so
  the cgroup tree cache and the map of checks stuck in a system call live from cycle to cycle.
- **Framed.** Requests and answers are JSON objects, each preceded by its length (4 bytes,
  big-endian), over the child's standard input and output; its standard error is discarded
  (a traceback could quote a value).
- **Watched.** A request not answered within its deadline (the checks' own deadline plus the
  stagger plus ``START_ALLOWANCE``, so the child reports a hung check itself, as
  ``failed``/``timeout``, before the parent gives up on it) makes the helper stuck: it is
  killed, and until the kernel lets it go and it is reaped, every request is refused with why;
  a second helper is never started beside a stuck one.
- **Minimal.** It starts with ``python -I`` (no ``PYTHON*`` variables, no user site, no
  script directory on ``sys.path``), importing selfcheck from the directory this process
  imported it from, and with an environment of the allow-listed ``DD_*`` values
  (``selfcheck.agentpod.ENV_ALLOWLIST``) and ``SELFCHECK_*`` settings only: never the API key,
  which the Agent's uid could otherwise read in ``/proc/<helper>/environ``.
- **Distrusted.** An answer is read under ``ANSWER_CAP`` while it streams (its announced
  length is refused before a byte of the body is read), parsed with a depth limit, and every
  field is validated again here: check ids against the registry, every asked id answered,
  statuses, reasons and severities from their closed sets, finding ids from the check's
  declared set, types and finite numbers. Anything else is a refusal that names what was
  wrong, never a value it held.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import selfcheck
from selfcheck.agentpod import DEFAULT_APM_SOCKET, DEFAULT_DOGSTATSD_SOCKET, ENV_ALLOWLIST
from selfcheck.config import Config
from selfcheck.delivery import LEDGER, Delivery, Item, Receipt, Sent
from selfcheck.host import malloc
from selfcheck.host.agent import ListenerVerdict
from selfcheck.host.eyes import AGENT, VIEWS, Credentials, Eyes
from selfcheck.host.procfs import read_start_time
from selfcheck.host.view import HeldSockets
from selfcheck.model import (
    NODE_INFO_KEYS,
    Finding,
    Outcome,
    Reason,
    Result,
    Severity,
    Status,
)
from selfcheck.registry import ORDER, CheckSpec

REQUEST_CAP = 64 * 1024
ANSWER_CAP = 4 * 1024 * 1024
MAX_DEPTH = 24
"""Nesting an answer may have: a check's details are a few levels deep."""
DEEP = f"the helper's answer is nested deeper than {MAX_DEPTH} levels"
HEADER = struct.Struct(">I")
START_ALLOWANCE = 3.0
"""Seconds for a new child's interpreter start and imports, on top of a request's deadline."""
ANSWER_ALLOWANCE = 1.0
"""Seconds for the child to answer after its last check's own deadline: the parent waits
longer than the child's runner, so a hung check comes back named, as ``failed``/``timeout``."""
DELIVERY_DEADLINE = 7.0
"""Seconds for one delivery of the service checks (the receipt's and attribution's budgets)."""
REAP_WAIT = 0.5
TEXT_CAP = 512
"""Characters of a refusal the child may give (the Agent's root it could not enter)."""
CHILD = "selfcheck.asagent_child"
LISTENER_SOCKETS = (
    ("DD_DOGSTATSD_SOCKET", DEFAULT_DOGSTATSD_SOCKET, "dgram"),
    ("DD_APM_RECEIVER_SOCKET", DEFAULT_APM_SOCKET, "stream"),
)
"""The sockets whose listener ``agent_container`` names: the setting, its default, the kind."""

Key = tuple[int, str, Credentials]
"""What one helper serves: the Agent's PID, its start time and the credentials it holds."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The helper's cycle: verdicts and the Agent's settings, or why it could not look."""

    verdicts: Mapping[str, Result]
    required: frozenset[str]
    notes: tuple[str, ...]
    settings_from: str
    refused: str = ""
    """Non-empty when the helper fell back: the Agent's root could not be entered."""
    sockets: HeldSockets | None = None


class RefusalError(ValueError):
    """An answer that is not one: the message says what was wrong, never a value it held."""


def refused(why: str) -> Answer:
    return Answer({}, frozenset(), (), "", refused=why)


# --- the child's command and environment ----------------------------------------------------


def import_root() -> Path:
    """The directory holding the ``selfcheck`` package this process runs: ``-I`` ignores
    ``PYTHONPATH``, so the child is told where to import the same code from."""
    return Path(selfcheck.__file__).resolve().parent.parent


def command(creds: Credentials) -> list[str]:
    """``python -I -c`` with the import root first on ``sys.path``; the credentials ride on
    the command line (ids only, nothing secret) for the child to take before anything else."""
    boot = (
        f"import sys; sys.path.insert(0, {str(import_root())!r}); from {CHILD} import main; main()"
    )
    return [sys.executable, "-I", "-c", boot, json.dumps(creds.to_json())]


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed ``DD_*`` values, selfcheck's own ``SELFCHECK_*`` settings and an
    operator's ``MALLOC_ARENA_MAX`` (``selfcheck.host.malloc``), no other variable: the child's
    environ is readable by the Agent's uid."""
    return {
        name: value
        for name, value in environ.items()
        if name in ENV_ALLOWLIST or name.startswith("SELFCHECK_") or name == malloc.ENV
    }


def unreadable_for(creds: Credentials, path: Path) -> str:
    """Why ``creds`` cannot import from ``path`` (a directory on the way it may not search,
    or the package it may not read), or ``""`` when it can."""
    package = path / "selfcheck"
    for part in [*reversed(package.parents), package]:
        try:
            st = part.stat()
        except OSError:
            return f"{part} cannot be read"
        need = 0o5 if part == package else 0o1
        if st.st_uid == creds.uid:
            allowed = st.st_mode >> 6 & 0o7
        elif st.st_gid == creds.gid or st.st_gid in creds.groups:
            allowed = st.st_mode >> 3 & 0o7
        else:
            allowed = st.st_mode & 0o7
        if allowed & need != need:
            return f"{part} (mode {stat.S_IMODE(st.st_mode):04o}) is closed to uid {creds.uid}"
    return ""


# --- frames ------------------------------------------------------------------------------------


def frame(body: Mapping[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    return HEADER.pack(len(data)) + data


def read_exact(fd: int, size: int, deadline: float) -> bytes:
    """``size`` bytes from ``fd`` by ``deadline`` (monotonic); ``RefusalError`` on EOF or time."""
    chunks: list[bytes] = []
    got = 0
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while got < size:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise TimeoutError
        chunk = os.read(fd, min(size - got, 1 << 16))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, cap: int, deadline: float) -> bytes:
    """One frame's body; a length over ``cap`` is refused before the body is read."""
    (size,) = HEADER.unpack(read_exact(fd, HEADER.size, deadline))
    if size > cap:
        raise RefusalError(f"the helper's answer announced {size} bytes, over the {cap} byte cap")
    return read_exact(fd, size, deadline)


def decode(raw: bytes) -> dict[str, Any]:
    """A JSON object nested at most ``MAX_DEPTH`` deep, or ``RefusalError``."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise RefusalError(DEEP) from None
    except ValueError:
        raise RefusalError("the helper's answer is not JSON") from None
    if not isinstance(body, dict):
        raise RefusalError("the helper's answer is not a JSON object")
    if _depth(body) > MAX_DEPTH:
        raise RefusalError(DEEP)
    return body


def _depth(value: object) -> int:
    """Nesting of lists and objects, without recursion: one level at a time, holding only
    the containers (a leaf costs one type test, where a stack of every value cost a seventh
    of the server's share of a cycle)."""
    level, layer = 0, [value]
    while layer and level <= MAX_DEPTH:
        level += 1
        deeper: list[object] = []
        for item in layer:
            children = item.values() if isinstance(item, dict) else item
            deeper += [c for c in children if isinstance(c, dict | list)]  # type: ignore[attr-defined]
        layer = deeper
    return level


# --- one child process -------------------------------------------------------------------------


class Helper:
    """One child: started with ``argv``, asked one request at a time."""

    def __init__(self, key: Key, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.key = key
        self.stuck_since: float | None = None
        self.stuck_why = ""
        self.fresh = True
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env=dict(env),
            close_fds=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ask(self, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """The child's answer to ``body``; ``RefusalError`` (and the child stuck) otherwise."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        try:
            self.proc.stdin.write(frame(body))
            self.proc.stdin.flush()
            raw = read_frame(self.proc.stdout.fileno(), ANSWER_CAP, deadline)
            answer = decode(raw)
        except TimeoutError:
            why = f"did not answer within {timeout:g} s"
            self._abandon(why)
            raise RefusalError(f"the helper as the Agent {why}") from None
        except (EOFError, BrokenPipeError, OSError):
            self._abandon("closed its pipes")
            code = self.proc.poll()
            raise RefusalError(
                f"the helper as the Agent exited ({code}) without an answer"
                if code is not None
                else "the helper as the Agent closed its pipes without an answer"
            ) from None
        except RefusalError as refusal:
            self._abandon(str(refusal))
            raise
        self.fresh = False
        return answer

    def _abandon(self, why: str) -> None:
        """Killed: its stream is no longer trusted. It stays stuck until it is reaped."""
        self.stuck_since = time.monotonic()
        self.stuck_why = why
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.reaped(REAP_WAIT)

    def reaped(self, wait: float = 0.0) -> bool:
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            return False
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        return True

    def stop(self) -> bool:
        """End a helper that is no longer wanted; ``True`` once it is reaped."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        return self.reaped(REAP_WAIT)


Command = Callable[[Credentials], list[str]]


class Helpers:
    """The runner's one helper at a time: started, reused, restarted, watched.

    ``command`` is how a child is started for given credentials: ``command`` above in
    production; tests hand in children that answer garbage or nothing, through this same code.
    """

    def __init__(
        self,
        command: Command = command,
        environ: Mapping[str, str] | None = None,
        checks_root: Path | None = None,
    ) -> None:
        self.command = command
        self.environ = child_environment(os.environ if environ is None else environ)
        self.checks_root = checks_root
        self.current: Helper | None = None
        self.started = 0
        """Children started so far (the footprint bench and the tests read it)."""
        self._lock = threading.Lock()

    def ask(self, key: Key, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """The answer of the helper for ``key`` (started when there is none); ``RefusalError``."""
        with self._lock:
            helper = self._helper_for(key)
            grace = START_ALLOWANCE if helper.fresh else 0.0
            return helper.ask(body, timeout + grace)

    def ask_running(
        self, key: Key, body: Mapping[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        """The answer of the helper already serving ``key``, never a new one: ``None`` when
        there is none (the service checks then go the server's own way)."""
        with self._lock:
            helper = self.current
            if helper is None or helper.key != key or helper.stuck_since is not None:
                return None
            if helper.proc.poll() is not None:
                return None
            return helper.ask(body, timeout)

    def _helper_for(self, key: Key) -> Helper:
        helper = self.current
        if helper is not None and helper.stuck_since is not None:
            if not helper.reaped():
                age = time.monotonic() - helper.stuck_since
                raise RefusalError(
                    f"the helper as the Agent (pid {helper.pid}) is still stuck from a request "
                    f"{age:.0f} s ago ({helper.stuck_why}) and not reaped; no second helper "
                    "is started"
                )
            helper = self.current = None
        if helper is not None and (helper.key != key or helper.proc.poll() is not None):
            if not helper.stop():
                helper.stuck_since, helper.stuck_why = time.monotonic(), "replaced"
                raise RefusalError(
                    f"the helper for the Agent before (pid {helper.pid}) is not reaped yet; "
                    "no second helper is started"
                )
            helper = self.current = None
        if helper is None:
            creds = key[2]
            why = unreadable_for(creds, self.checks_root or import_root())
            if why:
                raise RefusalError(f"the helper as the Agent could not import selfcheck: {why}")
            try:
                helper = Helper(key, self.command(creds), self.environ)
            except (OSError, subprocess.SubprocessError) as error:
                raise RefusalError(f"cannot start the helper: {type(error).__name__}") from None
            self.current = helper
            self.started += 1
        return helper

    def close(self) -> None:
        with self._lock:
            if self.current is not None:
                self.current.stop()
                self.current = None


# --- requests ------------------------------------------------------------------------------------


def key_of(eyes: Eyes, start_time: str) -> Key:
    return (eyes.agent_pid or 0, start_time, eyes.credentials)


def start_time(eyes: Eyes) -> str:
    """The Agent's start time (``procfs.read_start_time``): a restarted Agent gets a new helper."""
    try:
        return read_start_time(eyes.proc, eyes.agent_pid or 0)
    except OSError:
        return ""


def cycle_request(eyes: Eyes, ids: Sequence[str], config: Config) -> dict[str, Any]:
    """The cycle the helper runs: which checks, which Agent, selfcheck's own settings (flags
    included) that its environment alone would not give it, the Agent's processes whose
    sockets it reads, and the last delivery of the service checks for ``dogstatsd_socket``."""
    overrides = {
        "check_timeout": config.check_timeout,
        "sample_size": config.sample_size,
        "require": sorted(config.require),
        "skip": sorted(config.skip),
        "mode": config.mode,
        "dogstatsd_mode": config.dogstatsd_mode,
        "heartbeat_metric": config.heartbeat_metric,
        "pod_logs_dir": str(config.pod_logs_dir),
    }
    processes = [p.pid for p in eyes.discovery.processes] if eyes.discovery else []
    last = LEDGER.last()
    return {
        "kind": "cycle",
        "proc": str(eyes.proc),
        "pid": eyes.agent_pid,
        "started": eyes.pin.started if eyes.pin is not None else None,
        "ids": list(ids),
        "overrides": overrides,
        "processes": processes[:16],
        "delivery": delivery_to_json(last) if last is not None else None,
    }


def run_cycle(
    helpers: Helpers,
    eyes: Eyes,
    *,
    ids: Sequence[str],
    config: Config,
    checks: Mapping[str, CheckSpec],
    timeout: float,
    started: float,
) -> Answer:
    """One cycle in the helper for this Agent, as the runner's results; a refusal with why."""
    key = key_of(eyes, start_time(eyes))
    try:
        body = helpers.ask(key, cycle_request(eyes, ids, config), timeout)
        return parse_answer(body, ids, checks, started)
    except RefusalError as refusal:
        return refused(str(refusal))


def deliver(
    helpers: Helpers, eyes: Eyes, generation: int, items: Sequence[Item], receipt: bool
) -> Delivery | None:
    """The service checks sent by the helper, to the socket inside the Agent's root as the
    Agent's uid: ``None`` when no helper serves this Agent now."""
    body = {
        "kind": "deliver",
        "generation": generation,
        "items": [[check, data.decode("utf-8", "replace")] for check, data in items],
        "receipt": receipt,
    }
    try:
        answer = helpers.ask_running(key_of(eyes, start_time(eyes)), body, DELIVERY_DEADLINE)
        if answer is None:
            return None
        _refusal(answer)
        return delivery_from_json(_get(answer, "delivery", dict))
    except RefusalError as refusal:
        dropped = tuple(check for check, _ in items)
        return Delivery(
            generation, time.time(), Sent((), dropped, "helper", str(refusal)), None, "not read"
        )


# --- validation ----------------------------------------------------------------------------------


def _get(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RefusalError(f"the helper's answer has no valid {name!r}")
    return value


def _text(body: Mapping[str, Any], name: str, default: str | None = None) -> str:
    if default is not None and name not in body:
        return default
    value = _get(body, name, str)
    return str(value)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RefusalError(f"the helper's answer has a {what} that is not a finite number")
    return float(value)


def _closed(kind: Any, value: object, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise RefusalError(f"the helper's answer has a {what} outside the closed set") from None


def _refusal(body: Mapping[str, Any]) -> None:
    if "refused" in body:
        why = body["refused"]
        text = why[:TEXT_CAP] if isinstance(why, str) else "an unreadable refusal"
        raise RefusalError("".join(c if c.isprintable() else " " for c in text))


def _finding(raw: object, spec: CheckSpec) -> Finding:
    if not isinstance(raw, dict):
        raise RefusalError(f"the helper's answer has a finding of {spec.id} that is not an object")
    fid = _text(raw, "id")
    if fid not in spec.findings:
        raise RefusalError(f"the helper's answer has a finding id {spec.id} does not declare")
    severity = _closed(Severity, raw.get("severity"), f"severity of a {spec.id} finding")
    return Finding(fid, severity, _text(raw, "message"), _text(raw, "remediation"))


def _outcome(raw: Mapping[str, Any], spec: CheckSpec) -> Outcome:
    status = _closed(Status, raw.get("status"), f"status of {spec.id}")
    reason = _closed(Reason, raw.get("reason"), f"reason of {spec.id}")
    figures = raw.get("figures", {})
    node_info = raw.get("node_info", {})
    if not isinstance(figures, dict) or not isinstance(node_info, dict):
        raise RefusalError(f"the helper's answer has figures or node_info of {spec.id} not objects")
    if not set(node_info) <= set(NODE_INFO_KEYS) or not all(
        isinstance(v, str) for v in node_info.values()
    ):
        raise RefusalError(f"the helper's answer has node_info of {spec.id} outside the closed set")
    view = _text(raw, "view", "")
    if view and view not in VIEWS:
        raise RefusalError(f"the helper's answer has a view of {spec.id} outside the closed set")
    findings = _get(raw, "findings", list) if "findings" in raw else []
    return Outcome(
        status,
        reason,
        _text(raw, "message"),
        _text(raw, "remediation", ""),
        details=_get(raw, "details", dict) if "details" in raw else {},
        figures={str(k): _number(v, f"figure of {spec.id}") for k, v in figures.items()},
        node_info=node_info,
        findings=tuple(_finding(f, spec) for f in findings),
        view=view,
    )


def parse_answer(
    body: Mapping[str, Any],
    asked: Sequence[str],
    checks: Mapping[str, CheckSpec],
    started: float,
) -> Answer:
    """The child's answer as the runner's results, in the Agent's view, each timed from
    ``started`` by its own duration; ``RefusalError`` for anything that is not exactly that."""
    _refusal(body)
    required = frozenset(_get(body, "required", list))
    if not all(isinstance(c, str) and c in checks for c in required):
        raise RefusalError("the helper's answer requires a check id outside the registry")
    verdicts: dict[str, Result] = {}
    for raw in _get(body, "verdicts", list):
        if not isinstance(raw, dict):
            raise RefusalError("the helper's answer has a verdict that is not an object")
        cid = raw.get("check")
        if not isinstance(cid, str) or cid not in checks or cid not in asked or cid in verdicts:
            raise RefusalError("the helper's answer has a verdict for a check it was not asked")
        took = _number(raw.get("duration_seconds"), f"duration of {cid}")
        if took < 0:
            raise RefusalError(f"the helper's answer has a negative duration of {cid}")
        outcome = _outcome(raw, checks[cid])
        verdicts[cid] = Result(cid, outcome, cid in required, took, started, started + took, AGENT)
    missing = [cid for cid in asked if cid not in verdicts]
    if missing:
        raise RefusalError(f"the helper's answer has no verdict for {', '.join(missing)}")
    notes = _get(body, "notes", list)
    if not all(isinstance(n, str) for n in notes):
        raise RefusalError("the helper's answer has a note that is not text")
    return Answer(
        verdicts,
        required,
        tuple(notes),
        _text(body, "settings_from"),
        sockets=_sockets(body.get("sockets")),
    )


def _ids(values: object, what: str) -> list[int]:
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise RefusalError(f"the helper's answer has {what} that are not ids")
    return [int(v) for v in values]


def _sockets(raw: object) -> HeldSockets | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise RefusalError("the helper's answer has sockets that are not an object")
    pairs = raw.get("held")
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise RefusalError("the helper's answer has held sockets that are not pairs")
    held = {inode: pid for inode, pid in (_ids(p, "held sockets") for p in pairs)}
    unreadable = tuple(_ids(raw.get("unreadable"), "unreadable processes"))
    return HeldSockets(held, unreadable, _probes(raw.get("probes", {})))


def _probes(raw: object) -> dict[str, tuple[str, str]]:
    if not isinstance(raw, dict) or len(raw) > len(LISTENER_SOCKETS):
        raise RefusalError("the helper's answer has socket probes that are not an object")
    probes: dict[str, tuple[str, str]] = {}
    for path, pair in raw.items():
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)):
            raise RefusalError("the helper's answer has a socket probe that is not a pair")
        verdict = _closed(ListenerVerdict, pair[0], "socket probe verdict")
        probes[str(path)[:TEXT_CAP]] = (str(verdict), pair[1][:TEXT_CAP])
    return probes


# --- the delivery ledger across the pipe ------------------------------------------------------


def delivery_to_json(delivery: Delivery) -> dict[str, Any]:
    sent = delivery.sent
    body: dict[str, Any] = {
        "generation": delivery.generation,
        "at": delivery.at,
        "sent": list(sent.sent),
        "dropped": list(sent.dropped),
        "reason": sent.reason,
        "error": sent.error,
        "receipt_note": delivery.receipt_note,
        "receipt": None,
    }
    receipt = delivery.receipt
    if receipt is not None:
        body["receipt"] = {
            "port": receipt.port,
            "packets": receipt.packets,
            "parse_errors": receipt.parse_errors,
            "retried": receipt.retried,
            "rejected": list(receipt.rejected),
            "attributed": receipt.attributed,
        }
    return body


def _check_ids(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    values = _get(body, name, list)
    if not all(isinstance(v, str) and v in ORDER for v in values):
        raise RefusalError(f"the helper's delivery lists a check id outside the registry in {name}")
    return tuple(values)


def _count(body: Mapping[str, Any], name: str) -> int:
    value = _get(body, name, int)
    return int(value)


def delivery_from_json(body: Mapping[str, Any]) -> Delivery:
    """``delivery_to_json``'s inverse, validated like every answer; ``RefusalError`` otherwise."""
    sent = Sent(
        _check_ids(body, "sent"),
        _check_ids(body, "dropped"),
        _text(body, "reason"),
        _text(body, "error"),
    )
    raw = body.get("receipt")
    receipt = None
    if raw is not None:
        if not isinstance(raw, dict):
            raise RefusalError("the helper's delivery has a receipt that is not an object")
        receipt = Receipt(
            _count(raw, "port"),
            _count(raw, "packets"),
            _count(raw, "parse_errors"),
            bool(_get(raw, "retried", bool)),
            _check_ids(raw, "rejected"),
            bool(_get(raw, "attributed", bool)),
        )
    return Delivery(
        _count(body, "generation"),
        _number(body.get("at"), "delivery time"),
        sent,
        receipt,
        _text(body, "receipt_note"),
    )
