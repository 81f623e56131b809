"""One DogStatsD datagram over UDP, and what the kernel says back about the port.

UDP has no connection, so a send always "succeeds". A closed port is told by the peer's
kernel with an ICMP port unreachable, which Linux turns into ``ECONNREFUSED`` on a *connected*
UDP socket (udp(7): errors are reported only for connected sockets). On the loopback interface
that answer is immediate and never rate-limited (net/ipv4/icmp.c ``icmpv4_xrlim_allow`` makes
no limit for loopback), so its absence there proves a socket is bound to the port. Across a
pod network an answer may be dropped (a NetworkPolicy, a firewall): its absence proves nothing,
and the caller must say so.
"""

from __future__ import annotations

import os
import select
import socket
from dataclasses import dataclass

REFUSAL_WAIT = 0.05
"""Seconds to wait for an ICMP port unreachable after the send: on loopback it is queued
before ``send`` returns; across a pod network it takes one round trip."""


@dataclass(frozen=True, slots=True)
class UdpSend:
    """What one send did: the bytes written, and whether the peer's kernel refused the port."""

    address: tuple[str, int]
    sent: int
    refused: OSError | None

    @property
    def target(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"udp://{shown}:{port}"


def send_udp(host: str, port: int, payload: bytes, wait: float = REFUSAL_WAIT) -> UdpSend:
    """Send ``payload`` on a connected UDP socket without blocking, then wait up to ``wait``
    seconds for the port's refusal. ``OSError`` for a send that fails outright (no route,
    ``EACCES`` from a firewall, an address that does not resolve)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        sock.connect((host, port))
        sent = sock.send(payload)
        return UdpSend((host, port), sent, _refusal(sock, wait))


def _refusal(sock: socket.socket, wait: float) -> OSError | None:
    """The error the kernel queued on ``sock`` (``ECONNREFUSED`` from an ICMP port
    unreachable) within ``wait`` seconds, or ``None``."""
    poller = select.poll()
    poller.register(sock, select.POLLERR)
    if not poller.poll(max(0, int(wait * 1000))):
        return None
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return OSError(code, os.strerror(code)) if code else None
