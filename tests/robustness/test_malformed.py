"""Thousands of malformed requests: each gets its 4xx (a truncated head, the close), no crash.

Every request below is wrong in one way a client, a scanner or a confused proxy sends:
garbage request lines, oversized heads and headers, too many headers, wrong or unknown
methods, bodies (whole and truncated), bad versions and targets, broken header lines,
TLS handshakes on the plain port. The set is generated from a fixed seed, so a failure
names a request that reproduces. Each goes on its own connection to a real ``selfcheck
serve`` (8 clients at a time), then the client stops writing: the answer must be the
kind's own 4xx (the server then closes), or, for a head that never completed, the close
alone. Every few hundred requests, and at the end, ``/livez`` must still answer 200.
"""

from __future__ import annotations

import random
import socket
from concurrent.futures import ThreadPoolExecutor

from tests.robustness.conftest import ServeProcess, read_all, serve

SEED = 20240607
PER_KIND = 400
CHECK_EVERY = 400

METHODS = ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "get", "GETS", "PRI")


def _garbage(rng: random.Random) -> bytes:
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    return junk.replace(b"\r\n\r\n", b"") + b"\r\n\r\n"


def _oversized_line(rng: random.Random) -> bytes:
    return b"GET /" + b"a" * rng.randrange(8200, 20000) + b" HTTP/1.1\r\n\r\n"


def _oversized_header(rng: random.Random) -> bytes:
    return b"GET /livez HTTP/1.1\r\nX-Big: " + b"b" * rng.randrange(8200, 30000) + b"\r\n\r\n"


def _too_many_headers(rng: random.Random) -> bytes:
    count = rng.randrange(65, 400)
    return b"GET /livez HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(count)) + b"\r\n"


def _wrong_method(rng: random.Random) -> bytes:
    method = rng.choice(METHODS).encode()
    return method + b" /" + rng.choice((b"livez", b"readyz", b"metrics")) + b" HTTP/1.1\r\n\r\n"


def _body(rng: random.Random) -> bytes:
    declared = rng.randrange(1, 5000)
    sent = b"x" * rng.randrange(0, declared)  # whole or truncated, never more
    header = rng.choice((b"Content-Length: %d" % declared, b"Transfer-Encoding: chunked"))
    return b"GET /livez HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n" + sent


def _bad_line(rng: random.Random) -> bytes:
    return rng.choice((
        b"GET /livez HTTP/2.0\r\n\r\n",
        b"GET /livez HTTP/1.10\r\n\r\n",
        b"GET /livez SPDY/3\r\n\r\n",
        b"GET /livez\r\n\r\n",
        b"GET  /livez HTTP/1.1\r\n\r\n",
        b"GET /li vez HTTP/1.1\r\n\r\n",
        b"GET\t/livez\tHTTP/1.1\r\n\r\n",
        b"GET livez HTTP/1.1\r\n\r\n",
        b"GET http://127.0.0.1/livez HTTP/1.1\r\n\r\n",
        b"GET * HTTP/1.1\r\n\r\n",
        b" GET /livez HTTP/1.1\r\n\r\n",
        b"\r\n\r\n",
    ))  # fmt: skip


def _bad_header(rng: random.Random) -> bytes:
    line = rng.choice((
        b"no colon here", b": empty name", b" Host: folded", b"\tHost: tab", b"Ho st : x",
        b"Host : x",
    ))  # fmt: skip
    return b"GET /livez HTTP/1.1\r\n" + line + b"\r\n\r\n"


def _tls(rng: random.Random) -> bytes:
    return b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(32) + b"\r\n\r\n"


def _truncated_head(rng: random.Random) -> bytes:
    whole = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    return whole[: rng.randrange(1, len(whole) - 1)]


KINDS = (
    _garbage, _oversized_line, _oversized_header, _too_many_headers, _wrong_method, _body,
    _bad_line, _bad_header, _tls, _truncated_head,
)  # fmt: skip


EXPECTED = {
    _garbage: b"HTTP/1.1 400 ",
    _oversized_line: b"HTTP/1.1 431 ",
    _oversized_header: b"HTTP/1.1 431 ",
    _too_many_headers: b"HTTP/1.1 431 ",
    _wrong_method: b"HTTP/1.1 405 ",
    _body: b"HTTP/1.1 400 ",
    _bad_line: b"HTTP/1.1 400 ",
    _bad_header: b"HTTP/1.1 400 ",
    _tls: b"HTTP/1.1 400 ",
    _truncated_head: b"",  # the head never completed: nothing to answer, only the close
}
"""What each kind must get: one status, never "a 4xx or nothing"."""


def requests() -> list[tuple[bytes, bytes]]:
    """``(request, expected answer prefix)`` pairs, from the fixed seed."""
    rng = random.Random(SEED)
    return [(kind(rng), EXPECTED[kind]) for _ in range(PER_KIND) for kind in KINDS]


def send(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered 431 and closed before the whole head was sent
        return read_all(sock)


def _as_expected(reply: bytes, expected: bytes) -> bool:
    return reply.startswith(expected) if expected else reply == b""


def _run(server: ServeProcess, batch: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda item: send(server.port, item[0]), batch))
    return [(data, reply) for (data, _), reply in zip(batch, replies, strict=True)]


def test_every_malformed_request_gets_its_4xx_and_the_server_stays_up() -> None:
    everything = requests()
    assert len(everything) >= 2000
    assert set(EXPECTED) == set(KINDS)
    with serve() as server:
        for start in range(0, len(everything), CHECK_EVERY):
            batch = everything[start : start + CHECK_EVERY]
            for (data, reply), (_, expected) in zip(_run(server, batch), batch, strict=True):
                assert _as_expected(reply, expected), (data[:120], expected, reply[:200])
            assert server.request("/livez")[0] == 200
        assert server.proc.poll() is None
        assert server.request("/readyz")[0] == 200
        assert "Traceback" not in server.stderr()
