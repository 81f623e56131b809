"""``selfcheck serve``: the runner in a thread, the HTTP server on the event loop.

SIGTERM and SIGINT stop the server and the runner; the stop is bounded (the server waits
at most half a second for connections, the runner thread is a daemon), so the pod
terminates within a second instead of waiting for its grace period.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping

from selfcheck.config import Config
from selfcheck.http.app import App
from selfcheck.http.server import Server
from selfcheck.logs import event, setup
from selfcheck.metrics import Exposition, SnapshotCollector
from selfcheck.model import Snapshot
from selfcheck.registry import CheckSpec
from selfcheck.runner import Runner


def build_app(runner: Runner) -> App:
    stale_after = runner.config.stale_after

    def get_snapshot() -> Snapshot:
        return runner.snapshot

    def is_ready(snap: Snapshot) -> bool:
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


async def _serve(config: Config, runner: Runner) -> None:
    server = Server(build_app(runner), config.listen_host, config.listen_port)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    await server.start()
    log = setup()
    event(
        log,
        20,
        "serving",
        listen=f"{config.listen_host}:{server.port}",
        interval=config.interval,
        required=sorted(runner.required),
    )
    runner.start()
    await server.serve_forever()
    event(log, 20, "stopping")


def serve(config: Config, checks: Mapping[str, CheckSpec]) -> int:
    setup()
    runner = Runner(config, checks)
    try:
        asyncio.run(_serve(config, runner))
    except OSError as exc:
        print(
            f"selfcheck: cannot listen on {config.listen_host}:{config.listen_port}: {exc}",
            file=sys.stderr,
        )
        return 3
    finally:
        runner.stop()
    return 0
