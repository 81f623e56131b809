"""Reading the Agent's ``/debug/vars`` for ``dogstatsd-uds``: big, cut, odd and absent bodies.

A loopback HTTP server plays the Agent's expvar endpoint with exactly the bytes given (Go's
expvar layout: one object, keys sorted), because the Agent itself cannot run here.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfcheck.config import load
from selfcheck.host.expvar import _KeyScanner, read_uds_vars
from selfcheck.host.sockets import Deadline, ProtocolViolationError

UDS = {"Bytes": 10, "OriginDetectionErrors": 2, "PacketReadingErrors": 0, "Packets": 7}


class Body:
    data = b"{}"
    status = 200


@pytest.fixture
def expvar() -> Iterator[tuple[int, type[Body]]]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(Body.status)
            self.send_header("Content-Length", str(len(Body.data)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(Body.data)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], Body
    finally:
        server.shutdown()
        server.server_close()
        Body.data, Body.status = b"{}", 200


def _vars(padding_mib: int = 0, uds: object = UDS) -> bytes:
    doc = {"agent-padding": ["y" * 1022] * (padding_mib * 1024), "dogstatsd-uds": uds}
    return json.dumps({**doc, "zz-after": "z" * 100}, sort_keys=True).encode()


def test_candidate_ports_follow_the_agent_then_the_chart() -> None:
    assert load(frozenset(), {}).expvar_ports == (5000, 6000)
    assert load(frozenset(), {"DD_EXPVAR_PORT": "6001"}).expvar_ports == (6001,)


def test_counters_after_several_mib(expvar: tuple[int, type[Body]]) -> None:
    port, body = expvar
    body.data = _vars(padding_mib=6)
    found = read_uds_vars(port, Deadline(5))
    assert found.counters == UDS
    assert not found.truncated
    assert 6 * 2**20 < found.body_bytes <= len(body.data)


def test_a_body_cut_at_the_cap_is_reported_truncated(expvar: tuple[int, type[Body]]) -> None:
    port, body = expvar
    body.data = _vars(padding_mib=2)
    found = read_uds_vars(port, Deadline(5), cap=2**20)
    assert found.truncated and found.counters is None
    assert found.body_bytes == 2**20


def test_reading_stops_once_the_key_is_decoded(expvar: tuple[int, type[Body]]) -> None:
    port, body = expvar
    body.data = json.dumps({"dogstatsd-uds": UDS, "zz": "z" * 4_000_000}).encode()
    found = read_uds_vars(port, Deadline(5))
    assert found.counters == UDS
    assert found.body_bytes < 1_000_000


def test_no_uds_map_and_odd_values(expvar: tuple[int, type[Body]]) -> None:
    port, body = expvar
    body.data = json.dumps({"cmdline": ["agent"], "memstats": {}}).encode()
    found = read_uds_vars(port, Deadline(5))
    assert (found.counters, found.truncated) == (None, False)
    body.data = _vars(uds={"Packets": "7", "OriginDetectionErrors": True, "Bytes": 1.0})
    assert read_uds_vars(port, Deadline(5)).counters == {"Bytes": 1}


@pytest.mark.parametrize("data", [b"[1, 2]", b"<html>", b'{"a": 1, "dogstatsd-uds": {'])
def test_not_expvar_json_is_a_protocol_error(expvar: tuple[int, type[Body]], data: bytes) -> None:
    port, body = expvar
    body.data = data
    with pytest.raises(ProtocolViolationError):
        read_uds_vars(port, Deadline(5))


def test_http_error_status_gives_no_counters(expvar: tuple[int, type[Body]]) -> None:
    port, body = expvar
    body.status = 403
    found = read_uds_vars(port, Deadline(5))
    assert (found.status, found.counters) == (403, None)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=15), _JSON, max_size=6), st.integers(1, 64))
def test_the_scanner_agrees_with_json_loads(doc: dict[str, object], chunk: int) -> None:
    """Any object, fed in any chunk size, gives what a full parse gives for the key."""
    data = json.dumps(doc).encode()
    scanner = _KeyScanner("dogstatsd-uds")
    for i in range(0, len(data), chunk):
        scanner.feed(data[i : i + chunk])
        if scanner.found or scanner.closed:
            break
    else:
        scanner.feed(b"", final=True)
    assert scanner.found is ("dogstatsd-uds" in doc)
    assert scanner.value == doc.get("dogstatsd-uds")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_a_protocol_error_or_nothing(data: bytes) -> None:
    scanner = _KeyScanner("dogstatsd-uds")
    try:
        scanner.feed(data, final=True)
    except ProtocolViolationError:
        return
    assert scanner.value is None or scanner.found


def test_non_finite_counters_are_dropped_not_raised() -> None:
    """Python's JSON decoder accepts Infinity and NaN, which no counter can be."""
    from selfcheck.host.expvar import _counters

    assert _counters(
        {"Packets": float("inf"), "Bytes": float("nan"), "OriginDetectionErrors": 3}
    ) == {"OriginDetectionErrors": 3}
