"""What the helper holding a non-root Agent's credentials costs: ``footprint.py --agent-uid``.

Two pods of ``tests/support/pod.py`` side by side for the same ``duration``, each an Agent
stand-in (``agent run``, its DogStatsD socket counting like the Agent, its expvar and health
ports) and a bare ``selfcheck serve`` sidecar (root, the runtime's default capability set, no
host volume: it looks through the Agent's eyes) at the default interval, probed every 10 s
and scraped every 15 s like the footprint run. In one pod the Agent runs as root, so no
helper runs; in the other it runs as ``uid``, so one long-lived helper holds its
credentials. Sampled from ``/proc`` every second after the first two cycles: resident
memory of the server and of the helper, and their CPU ticks (the helper's start, interpreter
and imports, is before that and reported on its own). With ``--tls`` both servers serve
``bench/_tls.py``'s web configuration (TLS and one bcrypt user, mounted read-only into the
sidecar) and every probe and scrape is a new HTTPS connection with basic auth, as the
kubelet's HTTPS probes are.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench._common import CLK_TCK, ProcSample, cpu_share, free_port, median, sample, table
from bench._tls import https_get, web_config
from tests.support.pod import Pod, Spec, Volume, new_pod, pods
from tests.support.standins import AgentHTTPStandIn, DockerStandIn

PROBE_EVERY, SCRAPE_EVERY, SAMPLE_EVERY = 10.0, 15.0, 1.0
MARKER = b"selfcheck.asagent_child"


@dataclass
class Side:
    """One pod: its server's port and PID, and the helper's PID once there is one."""

    label: str
    port: int
    server: int
    helpers: set[int]
    cycles: int = 0
    tls: bool = False

    def get(self, path: str) -> bytes:
        """One request on a new connection; HTTPS with basic auth when the server has TLS."""
        if self.tls:
            status, body = https_get(self.port, path, timeout=5)
            if status >= 400:
                raise OSError(f"{path}: HTTP {status}")
            return body
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as reply:
            answer: bytes = reply.read()
            return answer


def _generation(side: Side) -> int:
    with contextlib.suppress(OSError, ValueError):
        return int(json.loads(side.get("/status")).get("generation", 0))
    return 0


def _helpers_of(server: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            if parent == server and MARKER in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
    return found


@contextlib.contextmanager
def _pod_with_agent(pod: Pod, uid: int, web: Path | None = None) -> Iterator[Side]:
    base = pod.base / f"uid{uid}"
    dsd, run = base / "dsd", base / "run"
    dsd.mkdir(parents=True)
    dsd.chmod(0o1777)
    run.mkdir()
    run.chmod(0o755)
    expvar, listen = free_port(), free_port()
    with AgentHTTPStandIn() as health, DockerStandIn(run / "docker.sock"):
        volumes = [
            Volume("procdir", None, "/host/proc"),
            Volume("cgroups", "/sys/fs/cgroup", "/host/sys/fs/cgroup", recursive_read_only=True),
            Volume("os-release-file", "/etc/os-release", "/host/etc/os-release"),
            Volume("dsdsocket", str(dsd), "/var/run/datadog", read_only=False),
            Volume("passwd", "/etc/passwd", "/etc/passwd"),
            Volume("runtimesocketdir", str(run), "/host/var/run"),
        ]
        env = {
            "DD_DOGSTATSD_SOCKET": "/var/run/datadog/dsd.socket",
            "DD_HEALTH_PORT": str(health.port),
            "DD_EXPVAR_PORT": str(expvar),
            "DOCKER_HOST": "unix:///host/var/run/docker.sock",
            "SA_COUNT": "1",
        }
        pod_uid = new_pod()
        agent = Spec(pod_uid, volumes, env=env, uid=uid, gid=uid + 1 if uid else 0)
        pod.start_agent(agent)
        own = {
            "DD_DOGSTATSD_SOCKET": env["DD_DOGSTATSD_SOCKET"],
            "DD_EXPVAR_PORT": str(expvar),
            "SELFCHECK_LISTEN": f"127.0.0.1:{listen}",
        }
        mounts = []
        if web is not None:
            mounts.append(Volume("web-config", str(web.parent), str(web.parent)))
            own["SELFCHECK_WEB_CONFIG"] = str(web)
        server = pod.popen_selfcheck(Spec(pod_uid, mounts, env=own, read_only_root=True), ["serve"])
        label = f"Agent uid {uid}: selfcheck serve" + (" + helper" if uid else "")
        label += " (TLS)" if web is not None else ""
        yield Side(label, listen, server.pid, set(), tls=web is not None)


def _warm(side: Side, generations: int, limit: float) -> None:
    end = time.monotonic() + limit
    while _generation(side) < generations:
        if time.monotonic() > end:
            raise SystemExit(f"{side.label}: fewer than {generations} cycles in {limit:g} s")
        time.sleep(0.2)
    side.helpers = _helpers_of(side.server)


def _drive(sides: list[Side], duration: float) -> dict[str, list[list[ProcSample]]]:
    """Per side, per sample time: the server's and the helper's samples."""
    samples: dict[str, list[list[ProcSample]]] = {side.label: [] for side in sides}
    began = time.monotonic()
    next_probe = next_scrape = next_sample = began
    while (now := time.monotonic()) - began < duration:
        if now >= next_probe:
            for side in sides:
                side.get("/livez")
                with contextlib.suppress(OSError):
                    side.get("/readyz")
            next_probe += PROBE_EVERY
        if now >= next_scrape:
            for side in sides:
                side.get("/metrics")
            next_scrape += SCRAPE_EVERY
        if now >= next_sample:
            for side in sides:
                side.helpers |= _helpers_of(side.server)
                pids = [side.server, *sorted(side.helpers)[:1]]
                samples[side.label].append([sample(pid) for pid in pids])
            next_sample += SAMPLE_EVERY
        time.sleep(max(0.0, min(next_probe, next_scrape, next_sample) - time.monotonic()))
    return samples


def _row(side: Side, rows: list[list[ProcSample]], helper_start: float) -> list[object]:
    first, last = rows[0], rows[-1]
    ticks = sum(b.cpu_ticks - a.cpu_ticks for a, b in zip(first, last, strict=False))
    per_cycle = ticks / CLK_TCK * 1000 / side.cycles if side.cycles else float("nan")
    server_rss = [r[0].rss_mb for r in rows]
    both_rss = [sum(s.rss_mb for s in r) for r in rows]
    server_cpu = cpu_share(first[0], last[0])
    helper_cpu = cpu_share(first[1], last[1]) if len(first) > 1 and len(last) > 1 else 0.0
    return [
        side.label,
        len(side.helpers),
        f"{median(server_rss):.1f}",
        f"{median(both_rss) - median(server_rss):.1f}" if len(first) > 1 else "-",
        f"{median(both_rss):.1f}",
        f"{server_cpu:.3f}",
        f"{helper_cpu:.3f}" if len(first) > 1 else "-",
        f"{server_cpu + helper_cpu:.3f}",
        f"{side.cycles} / {per_cycle:.1f}",
        f"{helper_start:.2f}" if len(first) > 1 else "-",
    ]


def agent_uid_table(duration: float, uid: int, tls: bool = False) -> str:
    """The root Agent's pod beside the ``uid`` Agent's, measured in the same window."""
    with pods() as pod, contextlib.ExitStack() as stack:
        web = None
        if tls:
            (pod.base / "web").mkdir(mode=0o755)
            web = web_config(pod.base / "web")
        root = stack.enter_context(_pod_with_agent(pod, 0, web))
        other = stack.enter_context(_pod_with_agent(pod, uid, web))
        sides = [root, other]
        for side in sides:
            _warm(side, 2, 120)
        start_cost = {
            side.label: sum(sample(pid).cpu_ticks for pid in sorted(side.helpers)[:1]) / CLK_TCK
            for side in sides
        }
        began = {side.label: _generation(side) for side in sides}
        samples = _drive(sides, duration)
        for side in sides:
            side.helpers |= _helpers_of(side.server)
            side.cycles = _generation(side) - began[side.label]
    headers = [
        "pod",
        "helpers seen",
        "server RSS MB (median)",
        "helper RSS MB",
        "together RSS MB",
        "server CPU % of one core",
        "helper CPU %",
        "together CPU %",
        "cycles / together CPU ms per cycle",
        "helper CPU s until 2nd cycle",
    ]
    rows = [_row(side, samples[side.label], start_cost[side.label]) for side in sides]
    return table(headers, rows) + (
        f"\n\n{duration:g} s at the default interval (30 s) after two cycles; probes every "
        f"{PROBE_EVERY:g} s, scrapes every {SCRAPE_EVERY:g} s"
        + (", each a new HTTPS connection with basic auth" if tls else "")
        + "; target: together < 0.15 % of one core."
    )
