"""After each cycle of ``selfcheck serve``: the service checks sent, and the Agent's receipt.

The datagrams (``selfcheck.servicechecks``) go where applications send theirs: the DogStatsD
socket the ``dogstatsd_socket`` check tests, or, in an install whose applications use UDP, the
Agent's UDP port the ``dogstatsd_udp`` check tests (``udp_target``); each with
``sendto(..., MSG_DONTWAIT)``: a full receive queue (``EAGAIN``) drops
that datagram and the rest of the cycle's, which are never queued for later, since the next
cycle carries fresher verdicts anyway. The kernel holds at most ``net.unix.max_dgram_qlen``
datagrams on the Agent's socket, 10 in a network namespace nobody tuned (a pod's), so the
datagrams go ``PACE`` apart rather than in one burst the Agent must drain as it arrives.
Every delivery runs in a thread of its own, so neither the pace nor a slow expvar endpoint
delays a cycle; a delivery still reading when the next cycle ends makes that cycle's send
without a receipt.

The receipt is the Agent's own count (comp/dogstatsd/server, the ``dogstatsd`` expvar map):
``ServiceCheckPackets`` must grow by what was sent and ``ServiceCheckParseErrors`` must not.
When the errors grew, the datagrams are sent again one at a time, the counters read after
each, so that a rejected datagram is named by its check id. The last delivery is kept in
``LEDGER``; the check of that transport reports it (``report``) with its next verdict.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from selfcheck.config import UDP, Config
from selfcheck.host.expvar import DOGSTATSD_KEY, SERVICE_CHECK_COUNTERS, UdsVars, read_map
from selfcheck.host.files import describe
from selfcheck.host.sockets import Deadline, classify
from selfcheck.logs import event, get_logger
from selfcheck.model import Finding, Severity, Snapshot
from selfcheck.registry import ORDER
from selfcheck.servicechecks import datagrams

RECEIPT_BUDGET = 1.0
"""Seconds for the counters before and after one delivery."""
ATTRIBUTION_BUDGET = 4.0
"""Seconds for sending the datagrams again one at a time, each between two reads."""
PACE = 0.005
"""Seconds between two datagrams of one delivery: a reader stalled for up to 50 ms (a
CPU-throttled Agent) still finds room for all of them; a dozen checks take about 60 ms."""
RECEIPT_SETTLE = 0.001
RECEIPT_RETRY = 0.15
"""The Agent hands the packets it read to its parsers when its packet buffer is full or
``dogstatsd_packet_buffer_flush_timeout`` (100 ms by default, pkg/config/setup) has passed, so
counters not yet moved are read once more after that."""
PACKETS, PARSE_ERRORS = SERVICE_CHECK_COUNTERS

Item = tuple[str, bytes]
Target = str | tuple[str, int] | None
"""A socket path, a UDP ``(host, port)``, or ``None`` when the UDP port is out of reach."""
OUT_OF_REACH = "the Agent's UDP port listens on its own pod's loopback, out of reach from here"
Remote = Callable[[int, list[Item], bool], "Delivery | None"]


def target_socket(config: Config) -> str:
    """The socket the service checks go to: the one the ``dogstatsd_socket`` check tests."""
    return str(config.dogstatsd_socket)


def udp_target(config: Config, shares_loopback: bool, agent_address: str | None) -> Target:
    """Where the ``dogstatsd_udp`` check sends: the Agent's port on the shared loopback (a
    sidecar), else at the Agent pod's address when it takes other pods' traffic."""
    if shares_loopback:
        return ("127.0.0.1", config.dogstatsd_port)
    if config.dogstatsd_non_local_traffic and agent_address:
        return (agent_address, config.dogstatsd_port)
    return None


def uses_udp(config: Config) -> bool:
    """The service checks go over UDP: the transport the install offers applications."""
    return config.dogstatsd_transport == UDP


def _shown(target: Target) -> str:
    if isinstance(target, tuple):
        return f"udp://{target[0]}:{target[1]}"
    return str(target)


@dataclass(frozen=True, slots=True)
class Sent:
    """What one pass of sends did: check ids written, check ids dropped, and why."""

    sent: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    reason: str = ""
    error: str = ""


def send_all(
    sock: socket.socket, path: str | tuple[str, int], items: Sequence[Item], pace: float = 0.0
) -> Sent:
    """Each datagram without blocking, ``pace`` seconds apart; the first error drops it and
    every one after it."""
    done: list[str] = []
    for index, (check, data) in enumerate(items):
        if index and pace:
            time.sleep(pace)
        try:
            sock.sendto(data, socket.MSG_DONTWAIT, path)
        except OSError as error:
            rest = tuple(c for c, _ in items[index:])
            return Sent(tuple(done), rest, str(classify(error)), describe(error, _shown(path)))
        done.append(check)
    return Sent(tuple(done))


@dataclass(frozen=True, slots=True)
class Receipt:
    """The Agent's ``dogstatsd`` counters around one delivery."""

    port: int
    packets: int
    parse_errors: int
    retried: bool = False
    rejected: tuple[str, ...] = ()
    """Check ids whose datagram, sent alone, moved ``ServiceCheckParseErrors``."""
    attributed: bool = False

    def received(self, sent: int) -> bool:
        return self.packets >= sent


@dataclass(frozen=True, slots=True)
class Delivery:
    """One cycle's service checks: the snapshot's generation, the sends, the receipt."""

    generation: int
    at: float
    sent: Sent
    receipt: Receipt | None = None
    receipt_note: str = "not read"


class Ledger:
    """The last delivery, written by the delivery thread and read by the next cycle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Delivery | None = None

    def record(self, delivery: Delivery) -> None:
        with self._lock:
            self._last = delivery

    def last(self) -> Delivery | None:
        with self._lock:
            return self._last


LEDGER = Ledger()


def _counters(vars_: UdsVars) -> tuple[int, int] | None:
    packets, errors = vars_.get(PACKETS), vars_.get(PARSE_ERRORS)
    return None if packets is None or errors is None else (packets, errors)


def read_counters(ports: Sequence[int], deadline: Deadline) -> tuple[UdsVars | None, str]:
    """The ``dogstatsd`` map from the first expvar port that has it, or why none had."""
    notes: list[str] = []
    for port in ports:
        try:
            found = read_map(port, deadline, DOGSTATSD_KEY, SERVICE_CHECK_COUNTERS)
        except OSError as error:
            notes.append(describe(error, f"127.0.0.1:{port}"))
            continue
        if _counters(found) is not None:
            return found, ""
        notes.append(f"127.0.0.1:{port}/debug/vars: HTTP {found.status}, no {DOGSTATSD_KEY} map")
    return None, "; ".join(notes) or "no expvar port"


def _delta(before: UdsVars, after: UdsVars) -> tuple[int, int]:
    a, b = _counters(before), _counters(after)
    if a is None or b is None:
        return 0, 0
    return b[0] - a[0], b[1] - a[1]


def read_after(before: UdsVars, sent: int, deadline: Deadline) -> Receipt:
    """The counters after ``sent`` datagrams, read once more if the packets have not all
    been counted yet (the Agent parses a moment after it reads)."""
    time.sleep(RECEIPT_SETTLE)
    after = read_map(before.port, deadline, DOGSTATSD_KEY, SERVICE_CHECK_COUNTERS)
    packets, errors = _delta(before, after)
    retried = False
    if packets + errors < sent and deadline.left() > RECEIPT_RETRY:
        time.sleep(RECEIPT_RETRY)
        after, retried = (
            read_map(before.port, deadline, DOGSTATSD_KEY, SERVICE_CHECK_COUNTERS),
            True,
        )
        packets, errors = _delta(before, after)
    return Receipt(before.port, packets, errors, retried)


def attribute(
    sock: socket.socket,
    path: str | tuple[str, int],
    items: Sequence[Item],
    port: int,
    deadline: Deadline,
) -> tuple[tuple[str, ...], bool]:
    """Each datagram alone between two reads: the check ids whose datagram the Agent
    rejected, and whether every datagram was tried within the deadline."""
    rejected: list[str] = []
    for check, data in items:
        try:
            before = read_map(port, deadline, DOGSTATSD_KEY, SERVICE_CHECK_COUNTERS)
            if send_all(sock, path, [(check, data)]).dropped:
                return tuple(rejected), False
            if read_after(before, 1, deadline).parse_errors > 0:
                rejected.append(check)
        except OSError:
            return tuple(rejected), False
    return tuple(rejected), True


class Deliverer:
    """Called with each published snapshot by the runner loop of ``selfcheck serve``."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger = LEDGER,
        logger: logging.Logger | None = None,
        target: Callable[[], Target] | None = None,
        remote: Remote | None = None,
    ) -> None:
        self.config = config
        self.target = target or (lambda: target_socket(config))
        """Where the last cycle judged the transport: the socket inside the Agent's root in its
        view, or the Agent's UDP port (``udp_target``)."""
        self.remote = remote
        """Delivers in the helper that holds the Agent's credentials, when one serves it
        (``selfcheck.asagent.deliver``): ``None`` means deliver here."""
        self.ledger = ledger
        self._log = logger or get_logger()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._udp: dict[int, socket.socket] = {}
        self._thread: threading.Thread | None = None
        self._last_reason: str | None = None

    def __call__(self, snapshot: Snapshot) -> None:
        """Never waits: the delivery runs in its own thread; with the receipt unless the last
        one is still being read."""
        items = list(datagrams(snapshot, self.config.service_check_prefix))
        receipt = self._thread is None or not self._thread.is_alive()
        thread = threading.Thread(
            target=self._deliver,
            args=(snapshot.generation, items, receipt),
            name="service-checks",
            daemon=True,
        )
        thread.start()
        if receipt:
            self._thread = thread

    def join(self, timeout: float) -> None:
        """Wait for the delivery under way, if any (a clean stop; tests)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _socket_for(self, target: str | tuple[str, int]) -> socket.socket:
        """The unix datagram socket, or a UDP one of the target's family, made once."""
        if not isinstance(target, tuple):
            return self._sock
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        if family not in self._udp:
            self._udp[family] = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        return self._udp[family]

    def _deliver(self, generation: int, items: list[Item], receipt: bool) -> None:
        delivery = None
        if self.remote is not None:
            try:
                delivery = self.remote(generation, items, receipt)
            except Exception as error:  # a bug must not end the thread silently or the loop
                self._log.exception("service check delivery failed")
                delivery = Delivery(generation, time.time(), Sent(), None, f"failed: {error!r}")
        if delivery is None:
            delivery = self.deliver(generation, items, receipt)
        self._record(delivery)

    def deliver(self, generation: int, items: list[Item], receipt: bool) -> Delivery:
        """Send ``items`` from this process and read the receipt: what the helper runs too."""
        path = self.target()
        if path is None:
            dropped = Sent((), tuple(c for c, _ in items), "not_shared", OUT_OF_REACH)
            return Delivery(generation, time.time(), dropped, None, "nothing sent")
        try:
            deadline = Deadline(RECEIPT_BUDGET)
            before, note = (
                read_counters(self.config.expvar_ports, deadline)
                if receipt
                else (None, "not read: the last delivery's receipt was still being read")
            )
            sent = send_all(self._socket_for(path), path, items, PACE)
            if before is None or not sent.sent:
                delivery = Delivery(generation, time.time(), sent, None, note or "nothing sent")
            else:
                delivery = self._receipt(generation, items, sent, before, deadline, path=path)
        except Exception as error:  # a bug must not end the thread silently or the loop
            self._log.exception("service check delivery failed")
            delivery = Delivery(generation, time.time(), Sent(), None, f"failed: {error!r}")
        return delivery

    def _receipt(
        self,
        generation: int,
        items: list[Item],
        sent: Sent,
        before: UdsVars,
        deadline: Deadline,
        *,
        path: str | tuple[str, int],
    ) -> Delivery:
        try:
            receipt = read_after(before, len(sent.sent), deadline)
        except OSError as error:
            return Delivery(
                generation, time.time(), sent, None, f"not read after: {describe(error)}"
            )
        if receipt.parse_errors > 0:
            mine = [item for item in items if item[0] in sent.sent]
            rejected, complete = attribute(
                self._socket_for(path),
                path,
                mine,
                receipt.port,
                Deadline(ATTRIBUTION_BUDGET),
            )
            receipt = Receipt(
                receipt.port,
                receipt.packets,
                receipt.parse_errors,
                receipt.retried,
                rejected,
                complete,
            )
        return Delivery(generation, time.time(), sent, receipt, "read")

    def _record(self, delivery: Delivery) -> None:
        self.ledger.record(delivery)
        reason = delivery.sent.reason
        if reason != self._last_reason:
            self._last_reason = reason
            event(
                self._log,
                logging.WARNING if reason else logging.INFO,
                "service checks dropped" if reason else "service checks sent",
                sent=len(delivery.sent.sent),
                dropped=len(delivery.sent.dropped),
                reason=reason or None,
                error=delivery.sent.error or None,
            )


# --- what the dogstatsd_socket check shows -------------------------------------------------

FIGURES = {
    "service_checks_sent": "Service checks the last delivery wrote to the DogStatsD socket.",
    "service_checks_dropped": (
        "Service checks the last delivery dropped (a full queue or a send error), never queued."
    ),
    "service_check_receipt_ok": (
        "1 when the Agent's ServiceCheckPackets grew by what was sent and "
        "ServiceCheckParseErrors did not (expvar), 0 when not, absent when not read."
    ),
    "service_check_parse_errors": (
        "ServiceCheckParseErrors the Agent counted during the last delivery (expvar)."
    ),
}

REJECTED_FIX = (
    "The Agent's DogStatsD parser rejected this service check (ServiceCheckParseErrors in its "
    "dogstatsd expvar map). Check that SELFCHECK_SERVICE_CHECK_PREFIX is a plain name and that "
    "the Agent is a version that reads service checks (_sc|); run `agent status` and look at "
    "the DogStatsD section, or switch them off with SELFCHECK_SERVICE_CHECKS=false."
)
NOT_RECEIVED_FIX = (
    "The Agent did not count selfcheck's service checks (ServiceCheckPackets did not grow): "
    "it reads another socket than DD_DOGSTATSD_SOCKET here (over UDP, another port than "
    "DD_DOGSTATSD_PORT), or drops packets. Compare the Agent container's DD_DOGSTATSD_SOCKET "
    "and DD_DOGSTATSD_PORT with this container's and look at the Agent's dogstatsd-uds (or "
    "dogstatsd-udp) PacketReadingErrors."
)


def report(
    config: Config, ledger: Ledger = LEDGER
) -> tuple[dict[str, Any], dict[str, float], tuple[Finding, ...]]:
    """Details, figures and findings for the last delivery, as the ``dogstatsd_socket`` check
    publishes them beside its own heartbeat's."""
    if not config.service_checks:
        return {"service_checks": "off (SELFCHECK_SERVICE_CHECKS=false)"}, {}, ()
    last = ledger.last()
    if last is None:
        return (
            {"service_checks": "none sent yet (selfcheck serve sends them after each cycle)"},
            {},
            (),
        )
    details: dict[str, Any] = {
        "generation": last.generation,
        "sent": len(last.sent.sent),
        "dropped": len(last.sent.dropped),
        "receipt": last.receipt_note,
    }
    if last.sent.error:
        details["error"] = last.sent.error
    figures = {
        "service_checks_sent": float(len(last.sent.sent)),
        "service_checks_dropped": float(len(last.sent.dropped)),
    }
    findings: tuple[Finding, ...] = ()
    if last.receipt is not None:
        details.update(_receipt_details(last.receipt))
        figures.update(_receipt_figures(last.receipt, len(last.sent.sent)))
        findings = _findings(last.receipt, len(last.sent.sent), config.service_check_prefix)
    return {"service_checks": details}, figures, findings


def _receipt_details(receipt: Receipt) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "expvar_port": receipt.port,
        "service_check_packets_delta": receipt.packets,
        "service_check_parse_errors_delta": receipt.parse_errors,
        "retried": receipt.retried,
    }
    if receipt.parse_errors:
        facts["rejected"] = list(receipt.rejected)
        facts["attributed"] = receipt.attributed
    return facts


def _receipt_figures(receipt: Receipt, sent: int) -> dict[str, float]:
    good = receipt.received(sent) and receipt.parse_errors == 0
    return {
        "service_check_receipt_ok": 1.0 if good else 0.0,
        "service_check_parse_errors": float(receipt.parse_errors),
    }


FINDINGS = frozenset(
    {
        "service_check_parse_errors",
        "service_checks_not_received",
        *(f"service_check_rejected_{cid}" for cid in ORDER),
    }
)
"""The finding ids the receipt reports, which ``dogstatsd_socket`` declares as its own."""


def _findings(receipt: Receipt, sent: int, prefix: str) -> tuple[Finding, ...]:
    found = [
        Finding(
            f"service_check_rejected_{check}",
            Severity.WARNING,
            f"the Agent counted a service check parse error for {prefix}.{check} when it was "
            f"sent alone (127.0.0.1:{receipt.port}/debug/vars, dogstatsd.ServiceCheckParseErrors)",
            REJECTED_FIX,
        )
        for check in receipt.rejected
    ]
    if receipt.parse_errors and not receipt.rejected:
        found.append(
            Finding(
                "service_check_parse_errors",
                Severity.WARNING,
                f"ServiceCheckParseErrors grew by {receipt.parse_errors} while selfcheck sent its "
                "service checks, but no datagram of selfcheck's moved it when sent alone: another "
                "client's, or one rejected intermittently",
                REJECTED_FIX,
            )
        )
    if not receipt.received(sent) and receipt.packets + receipt.parse_errors < sent:
        found.append(
            Finding(
                "service_checks_not_received",
                Severity.WARNING,
                f"the Agent counted {receipt.packets} of the {sent} service checks selfcheck sent "
                f"(127.0.0.1:{receipt.port}/debug/vars, dogstatsd.ServiceCheckPackets)",
                NOT_RECEIVED_FIX,
            )
        )
    return tuple(found)
