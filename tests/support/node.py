"""One machine's worth of node state for the tests that run real pods beside an Agent stand-in:
the DogStatsD socket directory, the runtime's socket directory with a Docker stand-in in it, the
Agent's health port, and a loopback port nothing listens on (the Agent's expvar, not run)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.pod import Pod, pods
from tests.support.standins import AgentHTTPStandIn, DockerStandIn


@dataclass
class Node:
    pod: Pod
    health: AgentHTTPStandIn
    closed_port: int

    @property
    def dsd_dir(self) -> Path:
        return self.pod.base / "dsd"

    @property
    def run_dir(self) -> Path:
        return self.pod.base / "run"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def machine(own_node: bool = False) -> Iterator[Node]:
    """The node, torn down with its pods; ``own_node``: a PID namespace of its own
    (``tests.support.pod.pods``)."""
    with pods(own_node=own_node) as pod, AgentHTTPStandIn() as health:
        for name, mode in (("dsd", 0o1777), ("run", 0o755)):
            (pod.base / name).mkdir()
            (pod.base / name).chmod(mode)
        with DockerStandIn(pod.base / "run" / "docker.sock"):
            yield Node(pod, health, closed_port())
