"""What each path answers, as a pure function of the current snapshot.

Generic over named results, like the Kubernetes apiserver's healthz: a new check adds a
``[+]id ok`` line and a ``/readyz/<id>`` path with no change here. Machines read only the
status code; the bodies are for people and stay far under the kubelet's 10 KiB read.
Nothing here runs a check: probes and scrapes only read the snapshot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from selfcheck.metrics import Exposition
from selfcheck.model import Result, Snapshot, Status

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    extra_headers: tuple[tuple[str, str], ...] = ()


def text(status: int, body: str) -> Response:
    return Response(status, body.encode())


@dataclass(slots=True)
class App:
    get_snapshot: Callable[[], Snapshot]
    is_live: Callable[[], bool]
    stale_after: float
    exposition: Exposition
    clock: Callable[[], float] = time.time

    def handle(self, target: str, accept: str = "") -> Response:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        if path.startswith("/readyz/"):
            return self._readyz_one(path.removeprefix("/readyz/"))
        query = parse_qs(parts.query, keep_blank_values=True)
        routes: dict[str, Callable[[], Response]] = {
            "/livez": self._livez,
            "/readyz": lambda: self._readyz(query),
            "/startupz": self._startupz,
            "/metrics": lambda: Response(200, *self.exposition.render(accept)),
            "/status": self._status,
        }
        route = routes.get(path)
        if route is None:
            return text(404, "not found; try /livez /readyz /startupz /metrics /status\n")
        return route()

    def _livez(self) -> Response:
        return text(200, "ok\n") if self.is_live() else text(503, "runner stalled\n")

    def _startupz(self) -> Response:
        if self.get_snapshot().started:
            return text(200, "ok\n")
        return text(503, "first check cycle not finished\n")

    def _readyz(self, query: dict[str, list[str]]) -> Response:
        snap = self.get_snapshot()
        exclude = frozenset(query.get("exclude", []))
        verbose = "verbose" in query
        lines = [_line(snap, cid) for cid in snap.check_ids if cid not in exclude]
        unknown = sorted(exclude - set(snap.check_ids))
        if unknown:
            lines.append(f"warn: cannot exclude unknown checks: {', '.join(unknown)}")
        problem = self._readiness_problem(snap, exclude)
        if problem is None:
            body = "\n".join([*lines, "readyz check passed"]) if verbose else "ok"
            return text(200, body + "\n")
        failing = [line for line in lines if line.startswith("[-]")]
        shown = lines if verbose else failing
        return text(503, "\n".join([*shown, f"readyz check failed: {problem}"]) + "\n")

    def _readiness_problem(self, snap: Snapshot, exclude: frozenset[str]) -> str | None:
        if not snap.started:
            return "first check cycle not finished"
        if not snap.is_fresh(self.clock(), self.stale_after):
            return "results are stale"
        failing = snap.failing_required(exclude)
        if failing:
            return "required checks failing: " + ", ".join(r.check for r in failing)
        return None

    def _readyz_one(self, cid: str) -> Response:
        snap = self.get_snapshot()
        if cid not in snap.check_ids:
            return text(404, f"unknown check {cid[:64]!r}\n")
        result = snap.results.get(cid)
        if result is None:
            return text(503, f"[-]{cid} not run yet\n")
        line = _line(snap, cid)
        failed = result.status in (Status.FAILED, Status.ERROR)
        return text(503 if failed else 200, line + "\n")

    def _status(self) -> Response:
        snap = self.get_snapshot()
        body = snap.to_json(self.clock(), self.stale_after)
        return Response(200, json.dumps(body, indent=1).encode(), JSON)


def _line(snap: Snapshot, cid: str) -> str:
    result = snap.results.get(cid)
    if result is None:
        return f"[-]{cid} pending"
    return _result_line(result)


def _result_line(result: Result) -> str:
    tag = "" if result.required else " (optional)"
    if result.status in (Status.FAILED, Status.ERROR):
        return f"[-]{result.check} {result.status}: {result.reason}{tag}"
    if result.status in (Status.DEGRADED, Status.SKIPPED):
        return f"[+]{result.check} {result.status}: {result.reason}{tag}"
    return f"[+]{result.check} ok{tag}"
