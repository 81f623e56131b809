"""``selfcheck serve``: the runner in a thread, the HTTP server on the event loop.

SIGTERM and SIGINT stop the server and the runner; the stop is bounded (the server waits
at most half a second for connections, the runner thread is a daemon), so the pod
terminates within a second instead of waiting for its grace period.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfcheck.config import Config
from selfcheck.exitcodes import EXIT_UNKNOWN
from selfcheck.host.malloc import one_arena
from selfcheck.http.app import App
from selfcheck.http.server import Server
from selfcheck.logs import event, get_logger, setup
from selfcheck.metrics import Exposition, SnapshotCollector
from selfcheck.model import Snapshot
from selfcheck.registry import CheckSpec
from selfcheck.runner import Runner

if TYPE_CHECKING:
    from selfcheck.http.access import Gate


def build_app(runner: Runner) -> App:
    stale_after = runner.config.stale_after

    def get_snapshot() -> Snapshot:
        return runner.snapshot

    def is_ready(snap: Snapshot) -> bool:
        """The snapshot's own verdict (decided once when it was made), if still fresh."""
        return snap.is_ready(runner.clock(), stale_after)

    def now() -> float:
        """Looked up on each call, so a test can move the runner's clock."""
        return runner.clock()

    collector = SnapshotCollector(get_snapshot, runner.checks, is_ready)
    return App(
        get_snapshot=get_snapshot,
        is_live=runner.is_live,
        stale_after=stale_after,
        exposition=Exposition(collector, get_snapshot),
        clock=now,
    )


async def _serve(config: Config, runner: Runner, gate: Gate | None = None) -> int:
    """Serve until SIGTERM (exit 0, the kubelet's stop) or SIGINT (130, Ctrl-C's code)."""
    server = Server(build_app(runner), config.listen_host, config.listen_port, gate=gate)
    loop = asyncio.get_running_loop()
    code = [0]

    def stop(signum: int) -> None:
        code[0] = 128 + signum if signum == signal.SIGINT else 0
        server.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    await server.start()
    log = setup()
    event(
        log,
        20,
        "serving",
        listen=f"{_shown_host(config.listen_host)}:{server.port}",
        interval=config.interval,
        required=sorted(runner.required),
        **_web_fields(gate),
    )
    runner.start()
    loop.set_exception_handler(_log_loop_error)
    freezer = loop.create_task(_freeze_after_first_cycle(runner))
    await server.serve_forever()
    freezer.cancel()
    event(log, 20, "stopping")
    return code[0]


async def _freeze_after_first_cycle(runner: Runner) -> None:
    """Move everything alive after start-up out of the garbage collector's sight.

    After the first cycle every module a check needs is imported (``h2``, ``http.client``),
    and those objects live as long as the process. Left in the collector's generations,
    each full collection walked all of them: 47 ms, in the middle of a cycle or of a
    probe's answer (bench/cycle.py, bench/http_load.py). Frozen, a collection sees only
    what a cycle allocated.
    """
    while not runner.snapshot.started:
        await asyncio.sleep(0.05)
    gc.collect()
    gc.freeze()


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An error the event loop caught (a callback that raised): one JSON line, no traceback
    on stderr, which would break the one-object-per-line log contract."""
    error = context.get("exception")
    event(
        get_logger(),
        logging.ERROR,
        "event loop error",
        message=str(context.get("message", "")),
        error=f"{type(error).__name__}: {error}" if error is not None else None,
    )


def _web_fields(gate: Gate | None) -> dict[str, Any]:
    """What the start line says about the web configuration (never a secret)."""
    if gate is None:
        return {"tls": False, "basic_auth": False}
    config = gate.watcher.active.config
    fields: dict[str, Any] = {
        "web_config": str(config.path),
        "tls": gate.tls,
        "basic_auth": bool(config.users),
    }
    if config.inert:
        fields["web_config_not_applied"] = list(config.inert)
    return fields


def load_gate(path: str | None) -> Gate | None:
    """The web configuration at start: ``WebConfigError`` (one line) when it cannot be used."""
    if not path:
        return None
    from selfcheck.http.access import Gate
    from selfcheck.http.webconfig import WebConfigWatcher

    return Gate(WebConfigWatcher(Path(path)))


def _shown_host(host: str) -> str:
    """The empty host is every address; an IPv6 one gets its brackets."""
    if not host:
        return "[::]"
    return f"[{host}]" if ":" in host else host


def _service_checks(runner: Runner) -> Callable[[Snapshot], None] | None:
    """The sender of each cycle's service checks, when they are on (docs/datadog.md), to the
    socket the last cycle judged (inside the Agent's root in its view), through the helper
    holding the Agent's credentials when one serves it."""
    if not runner.config.service_checks:
        return None
    from selfcheck.delivery import Deliverer

    return Deliverer(runner.config, target=runner.dogstatsd_target, remote=runner.deliver_as_agent)


def serve(config: Config, checks: Mapping[str, CheckSpec], web_config: str | None = None) -> int:
    """The sidecar; a web configuration that cannot be used stops it before it listens."""
    from selfcheck.http.webconfig import WebConfigError

    one_arena()
    setup()
    try:
        gate = load_gate(web_config)
    except WebConfigError as exc:
        print(f"selfcheck: web config: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    runner = Runner(config, checks)
    runner.on_cycle = _service_checks(runner)
    try:
        return asyncio.run(_serve(config, runner, gate))
    except OSError as exc:
        print(
            f"selfcheck: cannot listen on {_shown_host(config.listen_host)}:{config.listen_port}: "
            f"{exc}",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN
    finally:
        runner.stop()
