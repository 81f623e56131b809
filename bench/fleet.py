"""``selfcheck fleet`` over a synthetic fleet of 5,000 nodes served by a real Prometheus.

The fleet is written as OpenMetrics text with the families ``selfcheck fleet`` reads, with
the labels the PodMonitor and the Prometheus Operator give each target, imported with
``promtool tsdb create-blocks-from openmetrics`` and served by ``prometheus`` (Debian) from
that storage directory with no scrape job. Samples run from a little before now to
``--ahead`` minutes after it (every 2 minutes): an instant query at "now" then finds fresh
samples for as long as the bench runs, and the blocks are inside the retention window.

The fleet: every node degraded on ``security`` (the chart's defaults give warning findings
everywhere, since before the 6 h window), 2 % failing ``origin_detection`` (``not_host_pid``)
and 1 % ``dogstatsd_socket`` (``enoent``) for 1 to 5 hours, 5 % degraded ``passwd``; 20 nodes
whose target is down (``up == 0``) and 10 gone from discovery 15 minutes ago. The reason
series of the non-ok checks carry their whole history at 1-minute resolution, so the
``since`` subquery reads as much as on a real 6-hour-old fleet.

Cold: the first ``selfcheck fleet`` after Prometheus starts (``--restarts`` times); warm:
``--repeat`` runs after that. Both are the whole command (interpreter start included) and
the time inside it; the output is checked, not only timed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO, median, print_header, table

CHECKS = (
    "procfs", "cgroups", "os_release", "passwd", "runtime_socket", "dogstatsd_socket",
    "apm_socket", "origin_detection", "pod_logs", "agent_health", "security",
)  # fmt: skip
STATUSES = ("ok", "degraded", "failed", "skipped", "error")
SKIPPED = {"apm_socket": "not_enabled", "pod_logs": "not_enabled", "agent_health": "disabled"}
REQUIRED = {"procfs", "cgroups", "passwd", "runtime_socket", "dogstatsd_socket", "origin_detection"}
STEP, HISTORY_STEP = 120, 60
DOWN, GONE = 20, 10


class Node:
    """One node's verdicts: (status, reason, onset) per check; onset None means always."""

    def __init__(self, index: int, rng: random.Random, now: float) -> None:
        self.name = f"gke-prod-pool-{index % 10}-{index:05d}"
        self.labels = (
            f'cluster="prod",container="selfcheck",'
            f'instance="10.{index // 250}.{index % 250}.7:9750",'
            f'job="datadog/selfcheck",namespace="datadog",node="{self.name}",'
            f'nodepool="pool-{index % 10}",pod="datadog-{index:05x}"'
        )
        self.verdicts: dict[str, tuple[str, str, float | None]] = {}
        for cid in CHECKS:
            if cid in SKIPPED:
                self.verdicts[cid] = ("skipped", SKIPPED[cid], None)
            elif cid == "security":
                self.verdicts[cid] = ("degraded", "findings", None)
            else:
                self.verdicts[cid] = ("ok", "ok", None)
        draw = rng.random()
        onset = now - rng.uniform(3600, 5 * 3600)
        if draw < 0.02:
            self.verdicts["origin_detection"] = ("failed", "not_host_pid", onset)
        elif draw < 0.03:
            self.verdicts["dogstatsd_socket"] = ("failed", "enoent", onset)
        elif draw < 0.08:
            self.verdicts["passwd"] = ("degraded", "low_uid_coverage", onset)


def _times(start: float, end: float, step: int) -> list[int]:
    return list(range(int(start) // step * step, int(end), step))


def generate(path: Path, nodes: int, now: float, ahead: float, seed: int = 7) -> dict[str, int]:
    """Write the OpenMetrics file; returns what ``selfcheck fleet`` must then report."""
    rng = random.Random(seed)
    fleet = [Node(i, rng, now) for i in range(nodes)]
    down = fleet[:DOWN]
    gone = fleet[DOWN : DOWN + GONE]
    live = fleet[DOWN + GONE :]
    recent = _times(now - 6 * 60, now + ahead, STEP)
    history = _times(now - 6.5 * 3600, now + ahead, HISTORY_STEP)
    gone_times = _times(now - 30 * 60, now - 15 * 60, STEP)
    with path.open("w", buffering=1 << 20) as out:

        def series(name: str, labels: str, points: Iterator[tuple[int, float]]) -> None:
            prefix = f"{name}{{{labels}}} "
            out.write("".join(f"{prefix}{v:g} {t}\n" for t, v in points))

        out.write("# TYPE up gauge\n")
        for node in fleet:
            if node not in gone:
                value = 0.0 if node in down else 1.0
                series("up", node.labels, ((t, value) for t in recent))
        out.write("# TYPE selfcheck_ready gauge\n")
        for node in live:
            ready = all(
                not (cid in REQUIRED and st == "failed")
                for cid, (st, _, _) in node.verdicts.items()
            )
            series("selfcheck_ready", node.labels, ((t, float(ready)) for t in recent))
        for node in gone:
            series("selfcheck_ready", node.labels, ((t, 1.0) for t in gone_times))
        out.write("# TYPE selfcheck_check_status gauge\n")
        for node in live:
            for cid, (status, _, onset) in node.verdicts.items():
                for st in STATUSES:
                    labels = f'{node.labels},check="{cid}",status="{st}"'
                    now_hot, before_hot = float(st == status), float(st == "ok")
                    series(
                        "selfcheck_check_status",
                        labels,
                        (
                            (t, now_hot if onset is None or t >= onset else before_hot)
                            for t in recent
                        ),
                    )
        out.write("# TYPE selfcheck_check_required gauge\n")
        for node in live:
            for cid in CHECKS:
                required = float(cid in REQUIRED)
                series("selfcheck_check_required", f'{node.labels},check="{cid}"',
                       ((t, required) for t in recent))  # fmt: skip
        out.write("# TYPE selfcheck_check_success gauge\n")
        for node in live:
            for cid, (status, _, onset) in node.verdicts.items():
                now_ok, before_ok = float(status in ("ok", "degraded")), 1.0
                series(
                    "selfcheck_check_success",
                    f'{node.labels},check="{cid}"',
                    ((t, now_ok if onset is None or t >= onset else before_ok) for t in recent),
                )
        out.write("# TYPE selfcheck_check_reason gauge\n")
        for node in live:
            for cid, (status, reason, onset) in node.verdicts.items():
                labels = f'{node.labels},check="{cid}"'
                if status in ("ok", "skipped"):
                    series("selfcheck_check_reason", f'{labels},reason="{reason}"',
                           ((t, 1.0) for t in recent))  # fmt: skip
                    continue
                start = now - 7 * 3600 if onset is None else onset
                series("selfcheck_check_reason", f'{labels},reason="{reason}"',
                       ((t, 1.0) for t in history if t >= start))  # fmt: skip
                if onset is not None:
                    series("selfcheck_check_reason", f'{labels},reason="ok"',
                           ((t, 1.0) for t in recent if t < onset))  # fmt: skip
        out.write("# TYPE selfcheck_check_last_success_timestamp_seconds gauge\n")
        for node in live:
            for cid, (status, _, onset) in node.verdicts.items():
                if status == "skipped":
                    continue
                failed = status == "failed"
                series(
                    "selfcheck_check_last_success_timestamp_seconds",
                    f'{node.labels},check="{cid}"',
                    ((t, float(int(onset or 0) - 30) if failed else float(t)) for t in recent),
                )
        out.write("# EOF\n")
    failing = sum(
        1 for n in live for st, _, _ in n.verdicts.values() if st in ("failed", "degraded")
    )
    critical = sum(
        1
        for n in live
        for cid, (st, _, _) in n.verdicts.items()
        if st == "failed" and cid in REQUIRED
    )
    return {"nodes": nodes, "reporting": len(live), "missing": DOWN + GONE, "failing": failing,
            "critical": critical}  # fmt: skip


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as response:
        return int(response.status)


class Prometheus:
    def __init__(self, data: Path, port: int, work: Path) -> None:
        self.argv = [
            "prometheus", f"--config.file={work / 'empty.yml'}", f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d",
        ]  # fmt: skip
        (work / "empty.yml").write_text("global: {}\n")
        self.url = f"http://127.0.0.1:{port}"
        self.log = work / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                if _get(f"{self.url}/-/ready") == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("prometheus not ready within 120 s")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def run_fleet(url: str, python: str) -> tuple[float, dict[str, object], int]:
    began = time.monotonic()
    proc = subprocess.run(
        [python, "-m", "selfcheck", "fleet", "--prometheus", url, "--json", "--timeout", "60"],
        capture_output=True, text=True, cwd=REPO, check=False, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - began
    if proc.returncode not in (0, 1, 2):
        raise SystemExit(f"selfcheck fleet failed ({proc.returncode}): {proc.stderr}")
    return elapsed, json.loads(proc.stdout), proc.returncode


def inside(python: str, url: str) -> float:
    """The time of the queries and the assembly alone, without the interpreter's start."""
    code = (
        "import sys, time; from selfcheck.fleet import Prometheus, Queries, collect;"
        f"c = Prometheus({url!r}, 60); v = collect(c, Queries()); print(v.seconds)"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True, timeout=120)  # fmt: skip
    return float(out.stdout.strip())


def verify(body: dict[str, object], expected: dict[str, int], code: int) -> None:
    failing = body["failing"]
    assert isinstance(failing, list)
    missing = body["missing"]
    assert isinstance(missing, list)
    critical = sum(1 for f in failing if f["required"] and f["status"] == "failed")
    got = {
        "nodes": body["nodes"],
        "reporting": body["reporting"],
        "missing": len(missing),
        "failing": len(failing),
        "critical": critical,
    }
    if got != expected or code != 2:
        raise SystemExit(f"wrong fleet view: {got} (exit {code}), expected {expected} (exit 2)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--ahead", type=float, default=30, help="minutes of future samples")
    parser.add_argument("--restarts", type=int, default=3, help="cold runs (restarts)")
    parser.add_argument("--repeat", type=int, default=7, help="warm runs")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--port", type=int, default=19090)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sc-fleet-bench-", dir="/tmp"))
    try:
        now = time.time()
        began = time.monotonic()
        text = work / "fleet.om"
        expected = generate(text, args.nodes, now, args.ahead * 60)
        generated = time.monotonic() - began
        data = work / "data"
        began = time.monotonic()
        subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(text), str(data)],
            check=True, capture_output=True, timeout=1800,
        )  # fmt: skip
        imported = time.monotonic() - began
        size_mb = text.stat().st_size / 1e6
        text.unlink()
        cold, cold_inside, warm, warm_inside = [], [], [], []
        body: dict[str, object] = {}
        for _ in range(args.restarts):
            with Prometheus(data, args.port, work) as prom:
                elapsed, body, code = run_fleet(prom.url, args.python)
                verify(body, expected, code)
                cold.append(elapsed)
        with Prometheus(data, args.port, work) as prom:
            cold_inside.append(inside(args.python, prom.url))
            for _ in range(args.repeat):
                elapsed, body, code = run_fleet(prom.url, args.python)
                verify(body, expected, code)
                warm.append(elapsed)
                warm_inside.append(inside(args.python, prom.url))
        print_header("selfcheck fleet over a synthetic fleet", " ".join(["python", *sys.argv]))
        print(
            f"fleet: {args.nodes} nodes, {expected['reporting']} reporting, {expected['missing']}"
            f" missing, {expected['failing']} non-ok (node, check) pairs, {expected['critical']}"
            f" failing a required check; OpenMetrics {size_mb:.0f} MB written in {generated:.1f} s,"
            f" imported by promtool in {imported:.1f} s\n"
        )
        print(table(
            ["run", "n", "whole command, median s", "min s", "max s", "queries, median s"],
            [
                ["cold (first after start)", len(cold), f"{median(cold):.2f}", f"{min(cold):.2f}",
                 f"{max(cold):.2f}", f"{median(cold_inside):.2f} (first query after start)"],
                ["warm", len(warm), f"{median(warm):.2f}", f"{min(warm):.2f}", f"{max(warm):.2f}",
                 f"{median(warm_inside):.2f}"],
            ],
        ))  # fmt: skip
        target = "met" if max(median(cold), median(warm)) < 2.0 else "MISSED"
        print(f"\ntarget: under 2 s for {args.nodes} nodes: {target}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
