"""Every parser fed arbitrary input: no exception escapes, and no check raises.

A host file, a socket's answer or a request head can hold anything: a truncated write, a
binary file mounted at the wrong path, a hostile client, a different daemon on the port.
The project's rule is that bad input is data: a parser returns a
value (or raises ``OSError``, which the checks turn into a reason), a check returns an
``Outcome`` whose reason is one it declares, the HTTP parser answers 4xx. Each property
runs a fixed number of examples, derandomized, so CI is stable and a failure reproduces.
The check-level properties write the fuzzed bytes into real files and run the real check;
the socket answers come over real HTTP (the Agent stand-in) and real HTTP/2 (``h2``).

Covered: the HTTP request head and router; ``/proc/<pid>/status`` and its number fields,
capability masks and the identity built from them; mountinfo and the cgroup layout on
it; ``/proc/<pid>/cgroup`` and the container-ID rule; os-release; passwd; the CRI
protobuf, gRPC framing and HTTP/2 answer headers; the Agent's ``/ready``, expvar and the
trace-agent's ``/info`` answers; every configuration value parser.
"""

from __future__ import annotations

import contextlib
import re
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from selfcheck.checks import (
    agent_health,
    apm_socket,
    dogstatsd_socket,
    os_release,
    passwd,
)
from selfcheck.checks import procfs as procfs_check
from selfcheck.checks import security as security_check
from selfcheck.config import (
    ConfigError,
    load,
    parse_bool,
    parse_ids,
    parse_listen,
    parse_metric_name,
    parse_port,
    parse_positive_int,
    parse_seconds,
)
from selfcheck.context import CheckContext
from selfcheck.host import capabilities, cgroup, cri, identity, procfs, sampling
from selfcheck.host.sockets import Deadline, HttpReply
from selfcheck.http.app import App
from selfcheck.http.server import BadRequestError, parse_head, respond
from selfcheck.model import Outcome, Reason
from selfcheck.runner import Runner
from selfcheck.service import build_app
from tests.support.cgroup_rule import container_id_from_proc_cgroup
from tests.support.fake_checks import failing, passing
from tests.support.hosttree import proc_tree
from tests.support.protobuf import string_field
from tests.support.standins import AgentHTTPStandIn

FAST = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FILES = settings(FAST, max_examples=60)

# Text shaped like the files under test, mixed with anything at all.
# "²" and "٣" are digits to ``str.isdigit`` that ``int()`` rejects or reads as 3.
_PROCISH = st.text(alphabet=st.sampled_from(list("0123456789abcdef:,/-._ \t\n\r=\\x\x00é²٣")))
TEXT = st.one_of(st.text(max_size=400), _PROCISH)
BYTES = st.one_of(st.binary(max_size=400), _PROCISH.map(lambda t: t.encode("utf-8", "replace")))


def _never_raises_but(allowed: type[BaseException], fn: Callable[[], object]) -> None:
    with contextlib.suppress(allowed):
        fn()


# -- the HTTP request head -------------------------------------------------------------

_HEAD = st.builds(
    lambda method, target, version, headers: (
        f"{method} {target} {version}\r\n{headers}\r\n\r\n".encode("latin-1", "replace")
    ),
    st.sampled_from(["GET", "HEAD", "POST", "get", "", "GET GET"]),
    st.one_of(st.sampled_from(["/livez", "/readyz?verbose&exclude=x", "/metrics"]), TEXT),
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "", "HTTP/1.1 x"]),
    st.lists(TEXT, max_size=5).map("\r\n".join),
)


def _app() -> App:
    config = load(frozenset({"fine", "broken"}), {})
    runner = Runner(config, {"fine": passing(), "broken": failing()})
    runner.run_cycle()
    return build_app(runner)


APP = _app()


@FAST
@given(st.one_of(st.binary(max_size=600), _HEAD))
@example(b"GET /livez HTTP/1.1\r\n" + b"X: y\r\n" * 70 + b"\r\n")
@example(b"GET /%00 HTTP/1.1\r\n\r\n")
def test_http_heads_get_an_answer_never_an_exception(head: bytes) -> None:
    try:
        parse_head(head)
    except BadRequestError as bad:
        assert 400 <= bad.response.status < 500
    data, _keep_alive = respond(APP, head)
    status = int(data.split(b" ", 2)[1])
    assert data.startswith(b"HTTP/1.1 ") and status in (200, 400, 404, 405, 431, 503)


@FAST
@given(TEXT, st.sampled_from(["", "text/plain", "application/openmetrics-text; version=1.0.0"]))
def test_every_target_is_routed_to_an_answer(target: str, accept: str) -> None:
    assert APP.handle(target, accept).status in (200, 404, 503)


# -- host readers ----------------------------------------------------------------------


@FAST
@given(TEXT, st.lists(st.sampled_from(["Uid", "Name", "NSpid", "Cap"]), max_size=3))
def test_status_and_its_fields(text: str, keys: list[str]) -> None:
    fields = procfs.parse_status(text, keys)
    full = procfs.parse_status(text)
    assert all(full[k] == v for k, v in fields.items() if k in keys)
    for value in fields.values():
        assert isinstance(procfs.int_fields(value), list)
    identity.identity_from_status(fields)
    capabilities.parse_capability_sets(fields)


@FAST
@given(TEXT, st.sampled_from(["/", "/sys/fs/cgroup", "/host/sys/fs/cgroup"]), TEXT)
def test_mountinfo_and_what_is_built_on_it(text: str, root: str, path: str) -> None:
    mounts = procfs.parse_mountinfo(text)
    cgroup.detect_layout(mounts, root)
    procfs.mount_for(Path("/" + path.replace("\x00", "")), mounts)


@FAST
@given(TEXT, st.sampled_from([1, 2]))
@example("4:memory:/kubepods/pod1/" + "a" * 64 + "\n0::/x\n", 1)
@example("0::/system.slice/cri-containerd-" + "b" * 64 + ".scope\r\n", 2)
def test_proc_cgroup_lines_and_the_container_id_rule(text: str, version: int) -> None:
    lines = cgroup.parse_proc_cgroup(text)
    cgroup.in_runtime_cgroup(lines)
    found = container_id_from_proc_cgroup(text, version)
    assert found is None or cgroup.CONTAINER_ID_RE.fullmatch(found)
    for line in lines:
        cgroup.is_runtime_path(line.path)
        cgroup.container_id_from_name(line.path)


@FAST
@given(st.one_of(st.none(), TEXT))
@example("000001ffffffffff")
@example(" ffffffffffffffff\n")
@example("1ffffffffffffffff")  # 17 digits: more than 64 bits
@example("-1")
@example("0x1f")
@example("f_f")
@example("\u0663")  # a digit to int(), not hex the kernel writes
def test_capability_masks(value: str | None) -> None:
    """The oracle: 1 to 16 ASCII hex digits (what the kernel's %016llx writes) read as hex,
    anything else no mask at all."""
    text = value.strip() if value is not None else ""
    expected = int(text, 16) if re.fullmatch(r"[0-9a-fA-F]{1,16}", text) else None
    assert capabilities.parse_mask(value) == expected


@FAST
@given(BYTES)
@example(cri.grpc_frame(string_field(2, "containerd")))
@example(b"\x00\xff\xff\xff\xff")
def test_cri_protobuf_and_grpc_framing(data: bytes) -> None:
    _never_raises_but(OSError, lambda: cri.grpc_unframe(data))
    _never_raises_but(OSError, lambda: cri.decode_version(data))


@FAST
@given(
    st.lists(st.tuples(BYTES, BYTES), max_size=4),
    st.dictionaries(st.sampled_from([":status", "grpc-status", "grpc-message"]), TEXT),
)
@example([(b"grpc-status", b"\xff")], {":status": "200", "grpc-status": "\u00b2"})
def test_grpc_answer_headers(pairs: list[tuple[bytes, bytes]], headers: dict[str, str]) -> None:
    _never_raises_but(OSError, lambda: cri._check_status(cri._text_headers(pairs)))
    _never_raises_but(OSError, lambda: cri._check_status(headers))


class _H2Peer:
    """A unix-socket HTTP/2 server that answers one call with the given headers and data:
    the runtime socket's peer when it is not the CRI server the check expects."""

    def __init__(self, path: Path, headers: list[tuple[bytes, bytes]], data: bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.headers, self.data = headers, data
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import h2.config
        import h2.connection
        import h2.events

        peer, _ = self.sock.accept()
        config = h2.config.H2Configuration(client_side=False, validate_outbound_headers=False)
        conn = h2.connection.H2Connection(config)
        conn.initiate_connection()
        with peer, contextlib.suppress(Exception):  # whatever h2 thinks of what it sends
            peer.sendall(conn.data_to_send())
            while data := peer.recv(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        conn.send_headers(event.stream_id, self.headers)
                        conn.send_data(event.stream_id, self.data, end_stream=True)
                peer.sendall(conn.data_to_send())

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


@settings(FILES, max_examples=40)
@given(
    st.sampled_from([b"200", b"404", b"\xff", b""]),
    st.lists(st.tuples(st.sampled_from([b"grpc-status", b"x-a", b"grpc-message"]), BYTES)),
    BYTES,
)
@example(b"200", [(b"x-bad", b"\xff\xfe")], cri.grpc_frame(b""))
def test_cri_call_against_any_http2_answer(
    status: bytes, headers: list[tuple[bytes, bytes]], data: bytes
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "cri.sock"
        peer = _H2Peer(path, [(b":status", status), *headers], data)
        try:
            _never_raises_but(OSError, lambda: cri.version(path, 2.0))
        finally:
            peer.close()


@FAST
@given(st.integers(100, 599), BYTES)
@example(200, b"[" * 5000)
@example(200, b'{"Healthy": "x"}')
@example(200, b'{"version": 7}')
def test_answers_of_the_agent_and_trace_agent(status: int, body: bytes) -> None:
    reply = HttpReply(status, {}, body)
    _never_raises_but(OSError, lambda: agent_health.parse_health(reply))
    _never_raises_but(OSError, lambda: apm_socket._info(reply))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_UDS_KEYS = st.sampled_from(["Packets", "OriginDetectionErrors", "PacketReadingErrors", "x"])


@pytest.fixture(scope="module")
def expvar() -> Iterator[AgentHTTPStandIn]:
    with AgentHTTPStandIn() as agent:
        yield agent


@FILES
@given(st.one_of(_JSON, st.dictionaries(_UDS_KEYS, _JSON).map(lambda m: {"dogstatsd-uds": m})))
@example({"dogstatsd-uds": {"Packets": 10**400}})
@example({"dogstatsd-uds": {"Packets": float("nan"), "PacketReadingErrors": True}})
def test_the_agents_expvar_answer_whatever_it_holds(expvar: AgentHTTPStandIn, body: object) -> None:
    """The expvar port is read over real HTTP, from the test suite's Agent stand-in."""
    expvar.server.routes = {"/debug/vars": (200, body)}  # type: ignore[attr-defined]
    config = load(frozenset({"dogstatsd_socket"}), {"DD_EXPVAR_PORT": str(expvar.port)})
    details: dict[str, object] = {}
    figures = dogstatsd_socket._uds_counters(CheckContext.of(config), Deadline(2.0), details)
    assert all(isinstance(value, float) for value in figures.values())
    assert "expvar" in details


@FAST
@given(TEXT)
def test_configuration_values_are_a_value_or_one_config_error(raw: str) -> None:
    parsers: list[Callable[[], object]] = [
        lambda: parse_bool("X", raw),
        lambda: parse_port("X", raw, 1),
        lambda: parse_seconds("X", raw, 1.0, 0.05, 60),
        lambda: parse_positive_int("X", raw, 1, 100),
        lambda: parse_listen("X", raw),
        lambda: parse_ids("X", raw, frozenset({"procfs"})),
        lambda: parse_metric_name("X", raw, "m"),
    ]
    for parser in parsers:
        _never_raises_but(ConfigError, parser)
    env = {"SELFCHECK_INTERVAL": raw, "HOST_PROC": raw, "DD_HEALTH_PORT": raw}
    _never_raises_but(ConfigError, lambda: load(frozenset({"procfs"}), env))


# -- whole checks on fuzzed files --------------------------------------------------------


def _assert_declared(outcome: Outcome, reasons: tuple[Reason, ...]) -> None:
    assert isinstance(outcome, Outcome)
    assert outcome.reason in reasons, (outcome.reason, outcome.message)


def _tree(root: Path, status: list[bytes], cgroups: list[bytes]) -> None:
    pairs = enumerate(zip(status, cgroups, strict=False), 1)
    proc_tree(root, {pid: {"status": s, "cgroup": c} for pid, (s, c) in pairs})


@FILES
@given(BYTES)
@example(b'ID="unterminated\nVERSION_ID=12')
def test_os_release_check_on_any_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "os-release").write_bytes(data)
        config = load(frozenset({"os_release"}), {"HOST_ETC": directory})
        _assert_declared(
            os_release.run(CheckContext.of(config)), (Reason.OK, *os_release.SPEC.remediations)
        )


@FILES
@given(BYTES, st.lists(BYTES, max_size=4))
@example(b"root:x:0:0::/root:/bin/sh\n", [b"Uid:\t0\t0\t0\t0\n", b"Uid:\tzero\n"])
@example("u:x:\u00b2:0::/:/bin/sh\n".encode(), [])  # "²".isdigit() is true, int("²") fails
def test_passwd_check_on_any_passwd_and_status_files(data: bytes, status: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "etc").mkdir()
        (root / "etc" / "passwd").write_bytes(data)
        (root / "proc").mkdir()
        _tree(root / "proc", status, [b""] * len(status))
        env = {"HOST_ETC": str(root / "etc"), "HOST_PROC": str(root / "proc")}
        config = load(frozenset({"passwd"}), env)
        _assert_declared(
            passwd.run(CheckContext.of(config)), (Reason.OK, *passwd.SPEC.remediations)
        )


@FILES
@given(st.lists(BYTES, min_size=1, max_size=4), st.sampled_from([1, 2]))
def test_origin_detection_sample_on_any_cgroup_files(cgroups: list[bytes], version: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        _tree(root, [b"Uid:\t0\n"] * len(cgroups), cgroups)
        sample = sampling.sample_all(root, version, 256)
        assert sample.resolved <= sample.in_containers <= sample.sampled == len(cgroups)


@FILES
@given(st.lists(BYTES, min_size=2, max_size=3), st.lists(TEXT, max_size=3))
def test_procfs_check_on_any_status_files_and_mount_options(
    status: list[bytes], options: list[str]
) -> None:
    """The tree is a tmpfs directory, so the mount the check looks up is a procfs mount
    with fuzzed options given to it (``hidepid=`` parsing included)."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        _tree(root, status, [b"0::/\n"] * len(status))
        mount = procfs.Mount(1, 0, "/", directory, frozenset(options), "proc", "proc", frozenset())
        config = load(frozenset({"procfs"}), {"HOST_PROC": directory})
        with mock.patch.object(procfs_check, "_mount_of", lambda _path, _mounts: mount):
            outcome = procfs_check.run(CheckContext.of(config))
            _assert_declared(outcome, (Reason.OK, *procfs_check.SPEC.remediations))


@FILES
@given(TEXT, TEXT, st.sampled_from([True, False, None]))
def test_security_judge_on_any_status_and_mount_table(
    status: str, mountinfo: str, host_pid: bool | None
) -> None:
    who = identity.identity_from_status(procfs.parse_status(status))
    mounts = procfs.parse_mountinfo(mountinfo)
    config = load(frozenset({"security"}), {})
    outcome = security_check.judge(who, mounts, host_pid, config)
    _assert_declared(outcome, (Reason.OK, *security_check.SPEC.remediations))
