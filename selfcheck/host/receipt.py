"""The Agent's own ``dogstatsd-uds`` counters around one datagram of selfcheck's.

The expvar server (DataDog/datadog-agent comp/agent/expvarserver) listens on
``127.0.0.1:<expvar_port>``; ``Packets`` counts every client's packets and
``OriginDetectionErrors`` the ones whose sender had PID 0
(comp/dogstatsd/listeners/uds_common.go). This module reads them before and after a datagram
and, when errors grew, after a quiet window of the same length; the judge reads the deltas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from selfcheck.config import Config
from selfcheck.host.expvar import UdsVars, read_uds_vars
from selfcheck.host.files import describe
from selfcheck.host.sockets import Deadline

# How long the Agent gets to count a datagram before one retry.
RECEIPT_SETTLE = 0.001
RECEIPT_RETRY = 0.1


@dataclass(frozen=True, slots=True)
class Receipt:
    """``dogstatsd-uds`` before and after selfcheck's datagram, and after a quiet window."""

    before: UdsVars
    after: UdsVars
    quiet: UdsVars | None = None
    sent: int = 1
    retried: bool = False

    @property
    def port(self) -> int:
        """The expvar port every read of the receipt went to: the one ``before`` found."""
        return self.before.port

    def delta(self, name: str, later: UdsVars | None = None, earlier: UdsVars | None = None) -> int:
        a, b = (earlier or self.before).get(name), (later or self.after).get(name)
        return b - a if a is not None and b is not None else 0

    @property
    def readable(self) -> bool:
        return self.before.get("Packets") is not None and self.after.get("Packets") is not None


def find_expvar(config: Config, deadline: Deadline) -> tuple[UdsVars | None, str]:
    notes: list[str] = []
    for port in config.expvar_ports:
        try:
            found = read_uds_vars(port, deadline)
        except OSError as error:
            notes.append(describe(error, f"127.0.0.1:{port}"))
            continue
        if found.counters is not None:
            return found, ""
        why = "truncated before" if found.truncated else "without"
        notes.append(
            f"127.0.0.1:{port}/debug/vars: HTTP {found.status}, {found.body_bytes} bytes "
            f"read, {why} a dogstatsd-uds map"
        )
        if found.truncated or found.status == 200:
            return found, "; ".join(notes)
    return None, "; ".join(notes) or "no expvar port"


def read_after(before: UdsVars, deadline: Deadline, began: float) -> Receipt:
    """Read after the datagram, once more if ``Packets`` has not moved yet, then a quiet window.

    The quiet window (no datagram of ours, as long as the send window) is read only when
    ``OriginDetectionErrors`` grew: it tells whether the errors came with our datagram or
    from other senders too.
    """
    time.sleep(RECEIPT_SETTLE)
    after = read_uds_vars(before.port, deadline)
    receipt = Receipt(before, after)
    retried = False
    if receipt.delta("Packets") < 1 and deadline.left() > RECEIPT_RETRY:
        time.sleep(RECEIPT_RETRY)
        after, retried = read_uds_vars(before.port, deadline), True
    window = time.monotonic() - began
    quiet = None
    receipt = Receipt(before, after, None, 1, retried)
    if receipt.delta("OriginDetectionErrors") > 0 and deadline.left() > window:
        time.sleep(window)
        quiet = read_uds_vars(before.port, deadline)
    return Receipt(before, after, quiet, 1, retried)


def heartbeat(metric: str) -> bytes:
    """One DogStatsD counter increment, the smallest valid datagram a client sends."""
    return f"{metric}:1|c".encode()
