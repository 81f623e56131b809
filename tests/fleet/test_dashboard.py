"""The Grafana dashboard (``k8s/monitoring/grafana-dashboard.json``) against live data.

What is checked, in words: the file is a dashboard Grafana imports (unique panel ids, a
grid position each, every query on the ``$datasource`` variable); the ``cluster`` and
``nodepool`` variables find the values the PodMonitor's relabelling gives the live
fleet's series; every query of every panel, with the variables set to All (``.*``) and
to one value each, returns data from the live Prometheus of ``conftest.py`` (range
queries over the last seconds, instant ones now); and the nodes-by-checks matrix gives
each node's real status for each check (``failed`` is 2 on exactly the faulty nodes).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.fleet.conftest import CLUSTER, LiveFleet, wait_until
from tests.support.run import REPO

pytestmark = [pytest.mark.root, pytest.mark.containerd, pytest.mark.slow]

DASHBOARD = REPO / "k8s/monitoring/grafana-dashboard.json"
SETTINGS = {
    "all": {"$cluster": ".*", "$nodepool": ".*"},
    "one value": {"$cluster": CLUSTER, "$nodepool": "gpu"},
}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def targets() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{panel['title']}/{target['refId']}", target)
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]


def substitute(expr: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_the_dashboard_is_importable() -> None:
    board = dashboard()
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all({"x", "y", "w", "h"} <= p["gridPos"].keys() for p in panels)
    assert {p["title"] for p in panels} >= {
        "Nodes by checks", "Ready ratio", "Origin detection ratio", "Findings",
    }  # fmt: skip
    for _, target in targets():
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", "cluster", "nodepool"]


def test_the_variables_find_the_relabelled_values(live_fleet: LiveFleet) -> None:
    clusters = live_fleet.api("/api/v1/label/cluster/values", **{"match[]": "selfcheck_ready"})
    pools = live_fleet.api(
        "/api/v1/label/nodepool/values", **{"match[]": f'selfcheck_ready{{cluster=~"{CLUSTER}"}}'}
    )
    assert clusters == [CLUSTER]
    assert pools == ["default", "gpu"]
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["cluster"]["query"]["query"] == "label_values(selfcheck_ready, cluster)"
    assert "nodepool)" in variables["nodepool"]["query"]["query"]


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize(("name", "target"), targets(), ids=[n for n, _ in targets()])
def test_every_panel_query_returns_data(
    live_fleet: LiveFleet, name: str, target: dict[str, Any], setting: str
) -> None:
    expr = substitute(target["expr"], SETTINGS[setting])
    if target.get("instant"):
        got = wait_until(name, lambda: live_fleet.query(expr), 15, live_fleet.log)
    else:
        now = time.time()
        data = wait_until(
            name,
            lambda: live_fleet.api(
                "/api/v1/query_range", query=expr, start=f"{now - 30:.3f}", end=f"{now:.3f}",
                step="1",
            )["result"],
            15,
            live_fleet.log,
        )  # fmt: skip
        got = data
    assert got, f"{name} ({setting}) returned no data: {expr}"


def test_the_matrix_shows_each_nodes_status(live_fleet: LiveFleet) -> None:
    (matrix,) = [p for p in dashboard()["panels"] if p["title"] == "Nodes by checks"]
    expr = substitute(matrix["targets"][0]["expr"], SETTINGS["all"])
    cells = {
        (s["metric"]["node"], s["metric"]["check"]): float(s["value"][1])
        for s in live_fleet.query(expr)
    }
    assert {k for k, v in cells.items() if v == 2} == {
        ("node-b", "dogstatsd_socket"), ("node-c", "procfs"), ("node-c", "origin_detection"),
        ("node-d", "procfs"),
    }  # fmt: skip
    assert {k for k, v in cells.items() if v == 1} == {("node-e", "security")}
    assert cells[("node-a", "procfs")] == 0
    assert cells[("node-a", "security")] == -1
    assert {node for node, _ in cells} == {"node-a", "node-b", "node-c", "node-d", "node-e"}
    mapped = matrix["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {mapped[k]["text"] for k in ("-1", "0", "1", "2", "3")} == {
        "skipped", "ok", "degraded", "FAILED", "ERROR",
    }  # fmt: skip
