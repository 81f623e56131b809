"""The Agent's receipt: its ``dogstatsd-uds`` expvar counters, read from ``/debug/vars``.

The Agent serves Go's expvar JSON on ``127.0.0.1:$DD_EXPVAR_PORT`` (default 5000, the Agent's
and the Operator's; the Helm chart sets 6000), no auth, so a container of the same pod reads
it (datadog-agent comp/agent/expvarserver). Its ``dogstatsd-uds`` map counts ``Packets`` read
from the DogStatsD socket and ``OriginDetectionErrors`` (a PID of 0 or unparsable
credentials; comp/dogstatsd/listeners/uds_common.go).

A busy Agent's ``/debug/vars`` is large (memstats, every check's and forwarder's variables),
so the body is read incrementally, top-level key by top-level key, and reading stops as soon as
``dogstatsd-uds`` has been decoded; Go's expvar writes its keys in sorted order, so that is
early. Up to ``BODY_CAP`` bytes are read; a body that ends or is cut there before the key is
reported as ``truncated``, never as "no counters".
"""

from __future__ import annotations

import codecs
import http.client
import json
import math
import socket
from dataclasses import dataclass
from typing import Any, TypeGuard

from selfcheck.host.sockets import Deadline, ProtocolViolationError, ascii_host

BODY_CAP = 8 * 1024 * 1024
COUNTER_LIMIT = 2**64
CHUNK = 64 * 1024
UDS_KEY = "dogstatsd-uds"
COUNTERS = ("Packets", "OriginDetectionErrors", "PacketReadingErrors", "Bytes")
DOGSTATSD_KEY = "dogstatsd"
"""The parser's map (comp/dogstatsd/server): it sorts before ``dogstatsd-uds``, so it is as
cheap to reach."""
SERVICE_CHECK_COUNTERS = ("ServiceCheckPackets", "ServiceCheckParseErrors")
_WS = " \t\n\r"


@dataclass(frozen=True, slots=True)
class UdsVars:
    """One read of ``/debug/vars``: the counters (``None`` when absent) and how it went."""

    port: int
    status: int
    counters: dict[str, int] | None
    body_bytes: int
    truncated: bool

    def get(self, name: str) -> int | None:
        return None if self.counters is None else self.counters.get(name)


class _KeyScanner:
    """Decodes a JSON object's top-level members as bytes arrive, until ``key`` is found.

    Decoded members are dropped from the buffer; a member still incomplete is retried only
    once the unread text has doubled, so a member of several MiB is decoded a bounded number
    of times and the whole scan stays linear in the body's size.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.text = ""
        self.pending: list[str] = []
        self.pending_size = 0
        self.opened = False
        self.closed = False
        self.value: Any = None
        self.found = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._json = json.JSONDecoder()
        self._retry_at = 0

    def feed(self, data: bytes, final: bool = False, force: bool = False) -> None:
        """Add bytes; ``final`` at the end of the body, ``force`` to try now (at the cap)."""
        piece = self._decoder.decode(data, final)
        self.pending.append(piece)
        self.pending_size += len(piece)
        if len(self.text) + self.pending_size < self._retry_at and not (final or force):
            return
        self.text += "".join(self.pending)
        self.pending, self.pending_size = [], 0
        while not (self.found or self.closed):
            if not self._step(final):
                self._retry_at = 2 * len(self.text)
                return

    def _step(self, final: bool) -> bool:
        """Decode one more member; ``False`` when more input is needed."""
        text = self.text.lstrip(_WS)
        if not text:
            self.text = ""
            return False
        if not self.opened or text[0] in ",}":
            expected = "{" if not self.opened else text[0]
            if text[0] != expected:
                raise ProtocolViolationError("/debug/vars is not a JSON object")
            self.opened, self.closed = True, text[0] == "}"
            self.text = text[1:]
            return True
        if text[0] != '"':
            raise ProtocolViolationError("/debug/vars has a member without a string key")
        try:
            name, end = self._json.raw_decode(text, 0)
            colon = text.index(":", end)
            start = len(text) - len(text[colon + 1 :].lstrip(_WS))
            value, after = self._json.raw_decode(text, start)
        except (ValueError, IndexError):
            after = -1
        # A value that ends the buffer may be a number that goes on in the next chunk.
        if after < 0 or (after == len(text) and not final):
            if final:
                raise ProtocolViolationError("/debug/vars is not valid JSON")
            self.text = text
            return False
        self.text = text[after:]
        if name == self.key:
            self.found, self.value = True, value
        return True


def _counters(value: Any, names: tuple[str, ...] = COUNTERS) -> dict[str, int] | None:
    if not isinstance(value, dict):
        return None
    return {name: int(number) for name in names if _finite_number(number := value.get(name))}


def _finite_number(value: object) -> TypeGuard[int | float]:
    """A JSON number a counter can be: the Agent's are Go ``uint64``, so anything outside that
    range, ``Infinity`` and ``NaN`` (Python's decoder yields them) is garbage, dropped rather than
    raised on when converted (``int()``, ``float()``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return abs(value) < COUNTER_LIMIT  # an int compared as an int: no float conversion


def read_uds_vars(port: int, deadline: Deadline, cap: int = BODY_CAP) -> UdsVars:
    """``GET http://127.0.0.1:<port>/debug/vars``, stopping once ``dogstatsd-uds`` is read.

    Raises ``OSError`` when nothing answers (``ECONNREFUSED``), ``TimeoutError`` past the
    deadline, or ``ProtocolViolationError`` when the answer is not expvar JSON.
    """
    return read_map(port, deadline, UDS_KEY, COUNTERS, cap)


def read_map(
    port: int, deadline: Deadline, key: str, names: tuple[str, ...], cap: int = BODY_CAP
) -> UdsVars:
    """The counters ``names`` of the top-level map ``key``, read like ``read_uds_vars``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=deadline.left(0.5))
    try:
        conn.sock = socket.create_connection(
            (ascii_host("127.0.0.1"), port),  # type: ignore[arg-type]  # bytes: no IDNA codec
            deadline.left(0.5),
        )
        conn.request("GET", "/debug/vars", headers={"Accept-Encoding": "identity"})
        sock = conn.sock
        response = conn.getresponse()
        if response.status != 200:
            return UdsVars(port, response.status, None, 0, False)
        return _scan(port, response, sock, deadline, cap, key=key, names=names)
    except http.client.HTTPException as error:
        raise ProtocolViolationError(f"127.0.0.1:{port} is not an HTTP expvar: {error}") from None
    except TimeoutError:
        raise deadline.expired() from None
    finally:
        conn.close()


def _scan(
    port: int,
    response: http.client.HTTPResponse,
    sock: Any,
    deadline: Deadline,
    cap: int,
    *,
    key: str,
    names: tuple[str, ...],
) -> UdsVars:
    scanner = _KeyScanner(key)
    size = 0
    while not (scanner.found or scanner.closed) and size < cap:
        if sock is not None:
            sock.settimeout(deadline.left())
        chunk = response.read1(min(CHUNK, cap - size))
        size += len(chunk)
        scanner.feed(chunk, final=not chunk)
        if not chunk:
            break
    if not (scanner.found or scanner.closed):
        scanner.feed(b"", force=True)
    truncated = not (scanner.found or scanner.closed)
    return UdsVars(port, 200, _counters(scanner.value, names), size, truncated)
