"""The README stays a short user's guide whose names match the code.

Figures belong in ``bench/results/`` beside the command that produced them, history in
``CHANGELOG.md``: the README may quote a measured figure only if a results file holds it, and
it may not grow past its budget. Every metric and endpoint it names is one the code serves.
"""

from __future__ import annotations

import re
from pathlib import Path

from selfcheck.config import load
from selfcheck.http.app import NOT_FOUND, App
from selfcheck.metrics import Exposition, SnapshotCollector
from selfcheck.model import Snapshot
from selfcheck.registry import all_checks
from selfcheck.runner import Runner

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BUDGET = 260
"""Lines: about 250 (node_exporter's README is a guide of that size), with a little slack."""
FIGURE = re.compile(
    r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s*(ms|us|µs|MB|MiB|KB|KiB|GB|requests/s|req/s|x)(?![\w/])"
)
METRIC = re.compile(r"\bselfcheck_[a-z0-9_]+\b(?!<)")
ENDPOINT_ROW = re.compile(r"^\| `(/[a-z/<>]+)`", re.MULTILINE)


def figures(text: str) -> list[str]:
    """The measured figures a text quotes: a number with a unit of time, size, rate or ratio."""
    return [f"{number} {unit}" for number, unit in FIGURE.findall(text)]


def held_by_results(figure: str) -> bool:
    """Whether some file under ``bench/results/`` holds the figure's number."""
    number = figure.split(maxsplit=1)[0].replace(",", "")
    pattern = re.compile(rf"(?<![\d.]){re.escape(number)}(?![\d])")
    return any(
        pattern.search(path.read_text().replace(",", ""))
        for path in (REPO / "bench" / "results").glob("*.md")
    )


def app() -> App:
    """The HTTP app over the real checks' snapshot, before the first cycle."""
    checks = all_checks()
    runner = Runner(load(frozenset(checks), {}), checks)

    def snap() -> Snapshot:
        return runner.snapshot

    exposition = Exposition(SnapshotCollector(snap, checks, lambda s: False), snap)
    return App(snap, lambda: True, 90.0, exposition)


def served_metric_names() -> set[str]:
    """Every family name ``/metrics`` renders for the real checks."""
    text = app().handle("/metrics").body.decode()
    return set(re.findall(r"^# TYPE (\S+)", text, flags=re.MULTILINE)) | set(
        re.findall(r"^(selfcheck_[a-z0-9_]+)", text, flags=re.MULTILINE)
    )


def test_the_readme_stays_within_its_budget() -> None:
    assert len(README.read_text().splitlines()) <= BUDGET


def test_the_kubernetes_install_is_on_the_first_screen() -> None:
    """After the two tested commands and what selfcheck is, before anything else."""
    headings = [line for line in README.read_text().splitlines() if line.startswith("## ")]
    assert headings[0] == "## Kubernetes"
    assert README.read_text().splitlines().index("## Kubernetes") < 50


def test_every_figure_the_readme_quotes_is_in_bench_results() -> None:
    assert [f for f in figures(README.read_text()) if not held_by_results(f)] == []


def test_the_figure_rule_catches_a_dated_run() -> None:
    text = "The full cycle took 42.55 ms (was 90.9 ms), 33.4 MB, 46,573 requests/s, 3.7x."
    assert figures(text) == ["42.55 ms", "90.9 ms", "33.4 MB", "46,573 requests/s", "3.7 x"]
    assert [f for f in figures(text) if not held_by_results(f)] == ["90.9 ms"]


def test_every_metric_the_readme_names_is_served() -> None:
    named = set(METRIC.findall(README.read_text()))
    assert len(named) == 15
    assert named - served_metric_names() == set()


def test_every_endpoint_the_readme_lists_is_routed() -> None:
    listed = ENDPOINT_ROW.findall(README.read_text())
    assert listed == ["/livez", "/readyz", "/readyz/<id>", "/startupz", "/metrics", "/status"]
    served = app()
    assert [p for p in listed if served.handle(p.replace("<id>", "procfs")) is NOT_FOUND] == []
    assert served.handle("/nothing") is NOT_FOUND


def test_the_test_command_the_readme_states_is_the_one_ci_runs() -> None:
    stated = re.search(r"the test command `([^`]+)`", README.read_text(encoding="utf-8"))
    assert stated is not None
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert stated.group(1) in ci
    assert "--durations=15" in stated.group(1)
