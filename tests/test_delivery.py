"""The service checks' delivery: non-blocking sends, drops never queued, the Agent's receipt.

The receiver is a real ``unixgram`` socket (tests/support/standins.py), and the receipt comes
from the Agent stand-in process that parses ``_sc|`` datagrams like the Agent's DogStatsD
server and counts them in its expvar ``dogstatsd`` map (tests/support/agent_standin.py).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import MappingProxyType

import pytest

from selfcheck.config import Config, load
from selfcheck.delivery import Deliverer, Delivery, Ledger, Sent, report, send_all, udp_target
from selfcheck.model import Outcome, Reason, Result, Snapshot, Status
from selfcheck.registry import known_ids
from tests.support.standins import DogStatsDReceiver, WedgedListener, agent_standin, free_port

CHECKS = ("procfs", "cgroups", "pod_logs")
ITEMS = [(c, f"_sc|selfcheck.{c}|0|#check:{c}\n".encode()) for c in CHECKS]


def snapshot() -> Snapshot:
    results = {
        "procfs": Result("procfs", Outcome(Status.OK, Reason.OK, "fine"), True, 0.0, 1.0, 1.0),
        "cgroups": Result(
            "cgroups", Outcome(Status.FAILED, Reason.EACCES, "denied"), True, 0.0, 1.0, 1.0
        ),
    }
    return Snapshot(
        generation=7,
        check_ids=CHECKS,
        required=frozenset({"procfs", "cgroups"}),
        results=MappingProxyType(results),
        counters=MappingProxyType({}),
        completed_at=2.0,
        created_at=1.0,
    )


def config(sock: Path, port: int, **env: str) -> Config:
    return load(
        known_ids(),
        {"DD_DOGSTATSD_SOCKET": str(sock), "DD_EXPVAR_PORT": str(port), **env},
        containerized=lambda _env: (False, "test"),
    )


@pytest.fixture
def sender() -> socket.socket:
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)


def test_every_datagram_is_sent_once(tmp_path: Path, sender: socket.socket) -> None:
    with DogStatsDReceiver(tmp_path / "dsd.socket") as receiver:
        sent = send_all(sender, str(receiver.path), ITEMS)
        packets = receiver.wait_for(len(ITEMS))
    assert sent == Sent(CHECKS)
    assert [p.data for p in packets] == [data for _, data in ITEMS]


def test_a_full_queue_drops_the_cycle_without_waiting(
    tmp_path: Path, sender: socket.socket
) -> None:
    """A blocking send would hang for ever: nobody reads this socket. The sender's own socket is
    left blocking, so only ``MSG_DONTWAIT`` keeps it from waiting."""
    results: list[Sent] = []
    with DogStatsDReceiver(tmp_path / "dsd.socket", reading=False) as receiver:
        receiver.fill()
        thread = threading.Thread(
            target=lambda: results.append(send_all(sender, str(receiver.path), ITEMS)),
            daemon=True,
        )
        thread.start()
        thread.join(10)
    assert not thread.is_alive(), "the send waited for room in a full queue"
    (sent,) = results
    assert sender.getblocking()
    assert (sent.sent, sent.dropped, sent.reason) == ((), CHECKS, "eagain")
    assert "EAGAIN" in sent.error


def test_a_missing_socket_drops_the_cycle(tmp_path: Path, sender: socket.socket) -> None:
    sent = send_all(sender, str(tmp_path / "absent.socket"), ITEMS)
    assert (sent.dropped, sent.reason) == (CHECKS, "enoent")


def test_the_agent_counts_one_service_check_per_check(tmp_path: Path) -> None:
    port = free_port_number()
    ledger = Ledger()
    with agent_standin(tmp_path, port) as sock:
        deliverer = Deliverer(config(sock, port), ledger)
        deliverer(snapshot())
        deliverer.join(5)
    last = ledger.last()
    assert last is not None and last.receipt is not None, last
    assert (last.generation, last.sent.sent, last.receipt_note) == (7, CHECKS, "read")
    assert (last.receipt.packets, last.receipt.parse_errors) == (3, 0)
    details, figures, findings = report(config(sock, port), ledger)
    assert figures == {
        "service_checks_sent": 3.0,
        "service_checks_dropped": 0.0,
        "service_check_receipt_ok": 1.0,
        "service_check_parse_errors": 0.0,
    }
    assert findings == ()
    assert details["service_checks"]["service_check_packets_delta"] == 3


def test_a_rejected_service_check_is_a_finding_with_its_check_id(tmp_path: Path) -> None:
    port = free_port_number()
    ledger = Ledger()
    with agent_standin(tmp_path, port, "--reject-sc", "selfcheck.cgroups") as sock:
        deliverer = Deliverer(config(sock, port), ledger)
        deliverer(snapshot())
        deliverer.join(10)
    last = ledger.last()
    assert last is not None and last.receipt is not None, last
    assert (last.receipt.parse_errors, last.receipt.rejected) == (1, ("cgroups",))
    assert last.receipt.attributed
    _, figures, findings = report(config(sock, port), ledger)
    assert figures["service_check_receipt_ok"] == 0.0
    assert figures["service_check_parse_errors"] == 1.0
    assert [f.id for f in findings] == ["service_check_rejected_cgroups"]
    assert "selfcheck.cgroups" in findings[0].message


def test_no_expvar_sends_and_says_why_not_read(tmp_path: Path) -> None:
    ledger = Ledger()
    closed = free_port_number()
    with DogStatsDReceiver(tmp_path / "dsd.socket") as receiver:
        deliverer = Deliverer(config(receiver.path, closed), ledger)
        deliverer(snapshot())
        deliverer.join(5)
        assert len(receiver.wait_for(3)) == 3
    last = ledger.last()
    assert last is not None and last.receipt is None
    assert "ECONNREFUSED" in last.receipt_note
    _, figures, _ = report(config(receiver.path, closed), ledger)
    assert "service_check_receipt_ok" not in figures
    assert figures["service_checks_sent"] == 3.0


def test_a_cycle_ending_while_the_last_receipt_is_read_still_sends(tmp_path: Path) -> None:
    """The expvar port accepts and never answers: the first delivery waits for it in its own
    thread, and the next cycle's service checks go out at once, without a receipt."""
    ledger = Ledger()
    with WedgedListener() as wedged, DogStatsDReceiver(tmp_path / "dsd.socket") as receiver:
        deliverer = Deliverer(config(receiver.path, wedged.port), ledger)
        deliverer(snapshot())
        later = snapshot()
        deliverer(
            Snapshot(8, later.check_ids, later.required, later.results, later.counters, 3.0, 1.0)
        )
        second = receiver.wait_for(3)
        assert [p.data.split(b"|")[1] for p in second] == [
            b"selfcheck.procfs",
            b"selfcheck.cgroups",
            b"selfcheck.pod_logs",
        ]
        last = recorded(ledger, 8)
        assert last.receipt_note == "not read: the last delivery's receipt was still being read"
        deliverer.join(5)
        assert len(receiver.wait_for(6)) == 6
    first = ledger.last()
    assert first is not None and first.generation == 7
    assert "timed out" in first.receipt_note or "ETIMEDOUT" in first.receipt_note, first


def test_the_report_says_when_switched_off_or_not_sent_yet(tmp_path: Path) -> None:
    off = config(tmp_path / "s", 1, SELFCHECK_SERVICE_CHECKS="false")
    assert report(off, Ledger())[0] == {"service_checks": "off (SELFCHECK_SERVICE_CHECKS=false)"}
    details, figures, findings = report(config(tmp_path / "s", 1), Ledger())
    assert "none sent yet" in details["service_checks"]
    assert (figures, findings) == ({}, ())


def test_dropped_service_checks_show_as_figures(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.record(Delivery(3, 1.0, Sent((), CHECKS, "eagain", "x: (EAGAIN)"), None, "not read"))
    details, figures, _ = report(config(tmp_path / "s", 1), ledger)
    assert figures == {"service_checks_sent": 0.0, "service_checks_dropped": 3.0}
    assert details["service_checks"]["error"] == "x: (EAGAIN)"


def recorded(ledger: Ledger, generation: int) -> Delivery:
    """The ledger once the delivery of ``generation`` is recorded (it follows its last send)."""
    for _ in range(200):
        last = ledger.last()
        if last is not None and last.generation == generation:
            return last
        time.sleep(0.01)
    raise AssertionError(f"generation {generation} never recorded: {ledger.last()}")


def free_port_number() -> int:
    with free_port() as port:
        return port


# --- over UDP, where the install gives applications the UDP port ------------------------------


def udp_config(port: int, expvar: int) -> Config:
    """An Agent pod's environment with DogStatsD over UDS off: no DD_DOGSTATSD_SOCKET."""
    env = {
        "DD_DOGSTATSD_PORT": str(port),
        "DD_DOGSTATSD_NON_LOCAL_TRAFFIC": "true",
        "DD_EXPVAR_PORT": str(expvar),
    }
    return load(known_ids(), env, containerized=lambda _env: (True, "test"))


def test_over_udp_the_agent_counts_them_through_its_port(tmp_path: Path) -> None:
    """The service checks go where applications send theirs, the Agent's UDP port
    (``udp_target``), and its ``dogstatsd`` map proves receipt as for the socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        udp = probe.getsockname()[1]
    expvar, ledger = free_port_number(), Ledger()
    conf = udp_config(udp, expvar)
    assert udp_target(conf, True, None) == ("127.0.0.1", udp)
    with agent_standin(tmp_path, expvar, "--udp", str(udp)):
        deliverer = Deliverer(conf, ledger, target=lambda: udp_target(conf, True, None))
        deliverer(snapshot())
        deliverer.join(5)
    last = ledger.last()
    assert last is not None and last.receipt is not None, last
    assert (last.sent.sent, last.receipt_note) == (CHECKS, "read")
    assert (last.receipt.packets, last.receipt.parse_errors) == (3, 0)


def test_over_udp_out_of_reach_drops_them_and_says_why() -> None:
    """Node mode, the Agent's port on its own loopback: nothing is sent, the report says so."""
    conf = load(
        known_ids(), {"DD_DOGSTATSD_PORT": "8125"}, containerized=lambda _env: (True, "test")
    )
    assert udp_target(conf, False, "10.0.0.7") is None
    ledger = Ledger()
    deliverer = Deliverer(conf, ledger, target=lambda: udp_target(conf, False, "10.0.0.7"))
    deliverer(snapshot())
    deliverer.join(5)
    last = ledger.last()
    assert last is not None
    assert (last.sent.dropped, last.sent.reason) == (CHECKS, "not_shared")
    assert "out of reach" in last.sent.error
    wide = load(
        known_ids(),
        {"DD_DOGSTATSD_NON_LOCAL_TRAFFIC": "true"},
        containerized=lambda _env: (True, "test"),
    )
    assert udp_target(wide, False, "10.0.0.7") == ("10.0.0.7", 8125)
