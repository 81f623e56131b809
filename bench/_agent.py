"""The Agent's endpoints for the benchmarks, in their own process: ``_agent.py DIR``.

Prints one JSON line with the environment that points ``selfcheck`` at them, then serves
until its standard input closes. They are the test suite's stand-ins (the Agent itself
cannot run here), see ``tests/support/standins.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.standins import AgentHTTPStandIn, DogStatsDReceiver, TraceAgentStandIn


def main(directory: Path) -> None:
    dsd, apm = directory / "dsd.socket", directory / "apm.socket"
    with (
        DogStatsDReceiver(dsd) as receiver,
        TraceAgentStandIn(apm),
        AgentHTTPStandIn() as agent,
    ):
        env = {
            "DD_DOGSTATSD_SOCKET": str(dsd),
            "DD_APM_RECEIVER_SOCKET": str(apm),
            "DD_HEALTH_PORT": str(agent.port),
            "DD_EXPVAR_PORT": str(agent.port),
        }
        print(json.dumps(env), flush=True)
        sys.stdin.read()
        receiver.packets.clear()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
