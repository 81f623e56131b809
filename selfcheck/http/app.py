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
from urllib.parse import parse_qs

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


# The answers probes get most: built once, so the server's render cache keeps their bytes.
OK = text(200, "ok\n")
STALLED = text(503, "runner stalled\n")
NOT_STARTED = text(503, "first check cycle not finished\n")
NOT_FOUND = text(404, "not found; try /livez /readyz /startupz /metrics /status\n")


@dataclass(slots=True)
class App:
    get_snapshot: Callable[[], Snapshot]
    is_live: Callable[[], bool]
    stale_after: float
    exposition: Exposition
    clock: Callable[[], float] = time.time

    def handle(self, target: str, accept: str = "") -> Response:
        """Route by path; the query string is parsed only by ``/readyz``, which reads it."""
        path, _, query = target.partition("#")[0].partition("?")
        path = path.rstrip("/") or "/"
        if path.startswith("/readyz/"):
            return self._readyz_one(path.removeprefix("/readyz/"))
        route = _ROUTES.get(path)
        return NOT_FOUND if route is None else route(self, query, accept)

    def _livez(self, query: str, accept: str) -> Response:
        return OK if self.is_live() else STALLED

    def _startupz(self, query: str, accept: str) -> Response:
        return OK if self.get_snapshot().started else NOT_STARTED

    def _metrics(self, query: str, accept: str) -> Response:
        return Response(200, *self.exposition.render(accept))

    def _readyz_query(self, query: str, accept: str) -> Response:
        return self._readyz(parse_qs(query, keep_blank_values=True) if query else {})

    def _readyz(self, query: dict[str, list[str]]) -> Response:
        snap = self.get_snapshot()
        exclude = frozenset(query.get("exclude", []))
        verbose = "verbose" in query
        problem = self._readiness_problem(snap, exclude)
        if problem is None and not verbose:
            return OK
        lines = [_line(snap, cid) for cid in snap.check_ids if cid not in exclude]
        unknown = sorted(exclude - set(snap.check_ids))
        if unknown:
            lines.append(f"warn: cannot exclude unknown checks: {', '.join(unknown)}")
        if problem is None:
            return text(200, "\n".join([*lines, "readyz check passed"]) + "\n")
        failing = [line for line in lines if line.startswith("[-]")]
        shown = lines if verbose else failing
        return text(503, "\n".join([*shown, f"readyz check failed: {problem}"]) + "\n")

    def _readiness_problem(self, snap: Snapshot, exclude: frozenset[str]) -> str | None:
        if not snap.started:
            return "first check cycle not finished"
        if not snap.is_fresh(self.clock(), self.stale_after):
            return "results are stale"
        if snap.ready:  # decided once per snapshot, not per probe
            return None
        failing = [cid for cid in snap.blocking if cid not in exclude]
        return "required checks failing: " + ", ".join(failing) if failing else None

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

    def _status(self, query: str = "", accept: str = "") -> Response:
        snap = self.get_snapshot()
        body = snap.to_json(self.clock(), self.stale_after)
        return Response(200, json.dumps(body, indent=1).encode(), JSON)


_ROUTES: dict[str, Callable[[App, str, str], Response]] = {
    "/livez": App._livez,
    "/readyz": App._readyz_query,
    "/metrics": App._metrics,
    "/startupz": App._startupz,
    "/status": App._status,
}


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
