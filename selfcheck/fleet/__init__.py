"""``selfcheck fleet``: the fleet's verdicts, read from Prometheus's HTTP API.

Every sidecar already publishes its verdicts as metrics, so the fleet view is a handful of
PromQL instant queries, all evaluated at one instant (Prometheus's own clock, asked first)
and each answering a whole view for every node at once: the number of queries does not
grow with the fleet, and Prometheus does the aggregation (docs/fleet.md).

One job per module:

- ``client``: the HTTP API client (TLS with a CA file, basic auth from the URL, a bearer
  token, proxies from the environment), every failure one ``FleetError`` line;
- ``queries``: the PromQL of each view, over the metric names of ``selfcheck.metrics``;
- ``view``: the answers assembled into counts, failing pairs and missing nodes, and the
  exit code over the fleet;
- ``render``: the text report within 100 columns;
- ``command``: the flags checked and the whole command run.

This package is the only one that imports ``requests`` (the sidecar never loads it).
"""

from __future__ import annotations

from selfcheck.fleet.client import FleetError
from selfcheck.fleet.command import run

__all__ = ["FleetError", "run"]
