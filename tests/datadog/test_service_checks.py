"""A real ``selfcheck serve`` beside the Agent stand-in: its verdicts as service checks.

The stand-in (tests/support/agent_standin.py) reads the DogStatsD socket, parses ``_sc|``
datagrams the way the Agent's server does and counts them in its expvar ``dogstatsd`` map,
which selfcheck reads as its receipt. What is asserted is what a Datadog user would see: one
service check per check per cycle whose status follows the documented mapping, the receipt in
``/status`` and ``/metrics``, nothing at all with the switch off, and a full socket that
drops a cycle's service checks instead of queueing them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfcheck.servicechecks import escape, safe_message
from tests.support.run import base_env, stop
from tests.support.standins import DogStatsDReceiver, agent_standin, free_port

EXPECTED_STATUS = {"ok": 0, "skipped": 0, "degraded": 1}


def expected(result: dict[str, Any]) -> int:
    """The mapping docs/datadog.md documents, written out from the user's side."""
    if result["status"] in EXPECTED_STATUS:
        return EXPECTED_STATUS[result["status"]]
    return 2 if result["required"] else 1


def port_number() -> int:
    with free_port() as port:
        return port


@dataclass
class Served:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as reply:
            body: bytes = reply.read()
            return body

    def status(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.get("/status"))
        return document

    def check(self, cid: str) -> dict[str, Any]:
        (found,) = [c for c in self.status()["checks"] if c["check"] == cid]
        return dict(found)

    def until(self, what: Callable[[], Any], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError, AttributeError):
                found = what()
                if found:
                    return found
            time.sleep(0.05)
        raise AssertionError(f"not seen within {timeout} s; log: {self.log.read_text()[-3000:]}")


@contextlib.contextmanager
def serve(tmp: Path, env: dict[str, str]) -> Iterator[Served]:
    port = port_number()
    full = {"SELFCHECK_LISTEN": f"127.0.0.1:{port}", "HOST_PROC": "/proc", **env}
    log = tmp / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfcheck", "serve"],
            env=base_env(full),
            stdout=out,
            stderr=out,
            cwd="/",
        )
    served = Served(port, proc, log)
    try:
        served.until(lambda: served.get("/startupz"))
        yield served
    finally:
        stop(proc)


def expvar(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/vars", timeout=5) as reply:
        document: dict[str, Any] = json.loads(reply.read())
        return document


def test_one_service_check_per_check_per_cycle_with_the_mapped_status(tmp_path: Path) -> None:
    agent_port = port_number()
    with agent_standin(tmp_path, agent_port) as sock:
        env = {"DD_DOGSTATSD_SOCKET": str(sock), "DD_EXPVAR_PORT": str(agent_port)}
        with serve(tmp_path, {**env, "SELFCHECK_INTERVAL": "3600"}) as served:
            checks = served.status()["checks"]
            received = served.until(
                lambda: (
                    (got := expvar(agent_port)["standin-service-checks"])
                    and len(got) >= len(checks)
                    and got
                )
            )
            time.sleep(0.3)
            final = expvar(agent_port)
    assert final["dogstatsd"]["ServiceCheckPackets"] == len(checks)
    assert final["dogstatsd"]["ServiceCheckParseErrors"] == 0
    by_name = {sc["name"]: sc for sc in received}
    assert sorted(by_name) == sorted(f"selfcheck.{c['check']}" for c in checks)
    for result in checks:
        sc = by_name[f"selfcheck.{result['check']}"]
        assert sc["status"] == expected(result), (result, sc)
        required = "true" if result["required"] else "false"
        assert sc["tags"] == [
            f"check:{result['check']}",
            f"reason:{result['reason']}",
            f"required:{required}",
            f"view:{result.get('view', 'own')}",
        ]
        assert sc["message"] == escape(safe_message(result["message"]))


def test_the_receipt_is_published_and_a_rejected_datagram_is_a_finding(tmp_path: Path) -> None:
    agent_port = port_number()
    args = ("--reject-sc", "selfcheck.procfs")
    with agent_standin(tmp_path, agent_port, *args) as sock:
        env = {"DD_DOGSTATSD_SOCKET": str(sock), "DD_EXPVAR_PORT": str(agent_port)}
        with serve(tmp_path, {**env, "SELFCHECK_INTERVAL": "1"}) as served:
            result = served.until(
                lambda: (
                    (r := served.check("dogstatsd_socket"))
                    and r["details"]["service_checks"].get("rejected")
                    and r
                )
            )
            metrics = served.get("/metrics").decode()
    facts = result["details"]["service_checks"]
    assert facts["rejected"] == ["procfs"], facts
    assert facts["service_check_parse_errors_delta"] == 1
    assert facts["attributed"] is True
    assert [f["id"] for f in result["findings"]] == ["service_check_rejected_procfs"]
    assert "selfcheck.procfs" in result["findings"][0]["message"]
    assert result["figures"]["service_check_receipt_ok"] == 0.0
    assert "selfcheck_dogstatsd_socket_service_check_parse_errors 1.0" in metrics
    assert 'finding="service_check_rejected_procfs"' in metrics


def test_a_clean_receipt_is_ok_in_status_and_metrics(tmp_path: Path) -> None:
    agent_port = port_number()
    with agent_standin(tmp_path, agent_port) as sock:
        env = {"DD_DOGSTATSD_SOCKET": str(sock), "DD_EXPVAR_PORT": str(agent_port)}
        with serve(tmp_path, {**env, "SELFCHECK_INTERVAL": "1"}) as served:
            result = served.until(
                lambda: (
                    (r := served.check("dogstatsd_socket"))
                    and "service_check_receipt_ok" in r["figures"]
                    and r
                )
            )
            metrics = served.get("/metrics").decode()
    checks = len(served_checks(result))
    assert result["figures"]["service_check_receipt_ok"] == 1.0, result
    assert result["figures"]["service_checks_sent"] == checks
    assert result["details"]["service_checks"]["service_check_packets_delta"] == checks
    assert "findings" not in result
    assert "selfcheck_dogstatsd_socket_service_check_receipt_ok 1.0" in metrics


def served_checks(result: dict[str, Any]) -> range:
    return range(int(result["details"]["service_checks"]["sent"]))


def test_switched_off_nothing_is_sent(tmp_path: Path) -> None:
    agent_port = port_number()
    with agent_standin(tmp_path, agent_port) as sock:
        env = {
            "DD_DOGSTATSD_SOCKET": str(sock),
            "DD_EXPVAR_PORT": str(agent_port),
            "SELFCHECK_SERVICE_CHECKS": "false",
            "SELFCHECK_INTERVAL": "0.2",
        }
        with serve(tmp_path, env) as served:
            served.until(lambda: served.status()["generation"] >= 4)
            result = served.check("dogstatsd_socket")
            counted = expvar(agent_port)["dogstatsd"]
    assert counted["MetricPackets"] >= 3  # the heartbeat still goes out every cycle
    assert counted["ServiceCheckPackets"] == counted["ServiceCheckParseErrors"] == 0
    assert result["details"]["service_checks"] == "off (SELFCHECK_SERVICE_CHECKS=false)"
    assert "service_checks_sent" not in result["figures"]


def test_a_full_socket_drops_the_cycles_service_checks_and_queues_none(tmp_path: Path) -> None:
    closed = port_number()
    with DogStatsDReceiver(tmp_path / "dsd.socket", reading=False) as receiver:
        filled = receiver.fill()
        env = {
            "DD_DOGSTATSD_SOCKET": str(receiver.path),
            "DD_EXPVAR_PORT": str(closed),
            "SELFCHECK_INTERVAL": "0.3",
        }
        with serve(tmp_path, env) as served:
            full = served.until(
                lambda: (
                    (r := served.check("dogstatsd_socket"))
                    and r["details"]["service_checks"].get("generation", 0) >= 3
                    and r
                )
            )
            queued = receiver.drain()
            receiver.start_reading()
            drained_at = served.status()["generation"]
            served.until(lambda: served.status()["generation"] >= drained_at + 3)
            ended_at = served.status()["generation"]
            after = queued[filled:] + [p.data for p in receiver.packets]
    checks = full["details"]["service_checks"]["dropped"]
    assert (full["status"], full["reason"]) == ("degraded", "eagain"), full
    assert full["figures"]["service_checks_dropped"] == checks > 0
    assert full["figures"]["service_checks_sent"] == 0.0
    # the queue still held exactly what filled it: nothing of selfcheck's got in while full
    assert queued[:filled] == [b"filler:1|c"] * filled
    per_name = Counter(d.split(b"|")[1] for d in after if d.startswith(b"_sc|"))
    assert len(per_name) == checks
    # each check once per cycle after the drain: none of the dropped cycles is replayed
    assert max(per_name.values()) <= ended_at - drained_at + 2, per_name
    assert min(per_name.values()) >= 1
