"""The Agent's processes, environment and sockets as ``selfcheck.host.agent`` reads them.

Parsers are fed fixed bytes; the readers read real processes and real sockets of this machine.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfcheck import agentpod
from selfcheck.host import agent
from selfcheck.host.agent import ListenerVerdict
from tests.support.standins import stale_socket

CANARY = "selfcheck-canary-4f1b2c"
UID = "0f3c8f5e-1b2a-4c3d-9e8f-7a6b5c4d3e2f"
CID = "a" * 64


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        (["agent", "run"], "agent"),
        (["/opt/datadog-agent/bin/agent/agent", "run", "-c", "/etc/datadog-agent"], "agent"),
        (["agent run"], "agent"),
        (["agent", "status"], None),
        (["trace-agent", "-config=/etc/datadog-agent/datadog.yaml"], "trace-agent"),
        (
            ["trace-loader", "/etc/datadog-agent/datadog.yaml", "/opt/bin/trace-agent", "-x"],
            "trace-agent",
        ),
        (["trace-loader", "/etc/datadog-agent/datadog.yaml"], None),
        (["process-agent", "--cfgpath=/etc/datadog-agent/datadog.yaml"], "process-agent"),
        (["/opt/datadog-agent/embedded/bin/system-probe", "run"], "system-probe"),
        (["python3", "agent", "run"], None),
        ([], None),
    ],
)
def test_classify_by_command_line(cmdline: list[str], role: str | None) -> None:
    assert agent.classify("x", cmdline) == role


def test_classify_falls_back_to_the_executable_name() -> None:
    assert agent.classify("process-agent", []) == "process-agent"
    assert agent.classify("agent", []) is None  # cannot tell `agent run` from `agent status`


@pytest.mark.parametrize(
    ("path", "uid"),
    [
        (f"/kubepods/besteffort/pod{UID}/{CID}", UID),
        (f"/kubepods/pod{UID}/{CID}", UID),
        (
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            f"{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
            UID,
        ),
        (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope", UID),
        (f"/../../pod{UID}/{CID}", UID),
        (f"/docker/{CID}", None),
        ("/", None),
        (f"/kubepods/besteffort/podnotauid/{CID}", None),
    ],
)
def test_pod_uid_in_every_kubelet_layout(path: str, uid: str | None) -> None:
    assert agent.pod_uid(path) == uid


def test_same_pod() -> None:
    other = "1" * 8 + UID[8:]
    mine = f"/kubepods/besteffort/pod{UID}/{'b' * 64}"
    assert agent.same_pod(mine, f"/kubepods/besteffort/pod{UID}/{CID}")
    assert not agent.same_pod(mine, f"/kubepods/besteffort/pod{other}/{CID}")
    assert not agent.same_pod(mine, f"/docker/{CID}")
    # A private cgroup namespace: this process reads "/", a sibling "/../<id>".
    assert agent.same_pod("/", f"/../{CID}")
    assert not agent.same_pod("/", f"/../../pod{other}/{CID}")
    assert not agent.same_pod("/", "/")
    assert not agent.same_pod("/", "/..")


def test_parse_environ_keeps_only_the_allow_list() -> None:
    block = (
        f"DD_API_KEY={CANARY}\0DD_DOGSTATSD_SOCKET=/var/run/datadog/dsd.socket\0"
        f"DD_LOGS_ENABLED=true\0DD_APP_KEY={CANARY}\0PATH=/bin\0"
    ).encode() + b"DD_HEALTH_PORT=\xff5555\0\xfe\xfd=x\0noequals\0=\0"
    kept = agent.parse_environ(block)
    assert kept == {
        "DD_DOGSTATSD_SOCKET": "/var/run/datadog/dsd.socket",
        "DD_LOGS_ENABLED": "true",
        "DD_HEALTH_PORT": "\ufffd5555",
    }
    assert CANARY not in repr(kept)


_NAMES = st.sampled_from(["DD_API_KEY", "DD_APP_KEY", "X", "DD_LOGS_ENABLED", "", "DD_API_KEY="])


@given(st.lists(st.tuples(_NAMES, st.binary(max_size=40)), max_size=12), st.booleans())
def test_parse_environ_never_keeps_or_raises_on_a_secret(
    pairs: list[tuple[str, bytes]], complete: bool
) -> None:
    block = b"".join(n.encode() + b"=" + v + CANARY.encode() + b"\0" for n, v in pairs)
    kept = agent.parse_environ(block, complete=complete)
    assert set(kept) <= agentpod.ENV_ALLOWLIST
    assert all(CANARY not in value for name, value in kept.items() if name != "DD_LOGS_ENABLED")


def test_parse_environ_drops_an_entry_cut_by_the_cap() -> None:
    block = b"DD_LOGS_ENABLED=true\0DD_HEALTH_PORT=55"
    assert agent.parse_environ(block, complete=False) == {"DD_LOGS_ENABLED": "true"}
    assert agent.parse_environ(block) == {"DD_LOGS_ENABLED": "true", "DD_HEALTH_PORT": "55"}
    assert agent.parse_environ(bytearray(block), size=10) == {}


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process with a canary API key and two allow-listed settings in its environment.

    ``Popen`` returns as soon as the child's ``execve`` closed its close-on-exec pipe, before
    the kernel has laid out the new environment (fs/exec.c ``begin_new_exec``, then
    fs/binfmt_elf.c ``create_elf_tables``): until then ``environ`` reads empty. The child
    says ``ready`` from its own code, which runs only once ``execve`` has returned.
    """
    env = {"DD_API_KEY": CANARY, "DD_EXPVAR_PORT": "5000", "HOST_PROC": "/host/proc"}
    code = "import sys; print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_read_environ_of_a_real_process(sleeper: subprocess.Popen[bytes]) -> None:
    env = agent.read_environ(Path("/proc"), sleeper.pid)
    assert env.values == {"DD_EXPVAR_PORT": "5000", "HOST_PROC": "/host/proc"}
    assert not env.truncated
    small = agent.read_environ(Path("/proc"), sleeper.pid, cap=30)
    assert small.truncated and CANARY not in repr(small)


@pytest.mark.parametrize(("env", "blank"), [({}, True), ({"LANG": "C.UTF-8"}, False)])
def test_an_empty_environ_is_blank_not_no_settings(env: dict[str, str], blank: bool) -> None:
    """0 bytes (a process still in its ``execve``, here one started with no environment) is
    told from an environment without allow-listed names; ``read_view`` keeps no settings
    from it and says why."""
    code = "import sys; print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        read = agent.read_environ(Path("/proc"), proc.pid)
        view = agent.read_view(
            Path("/proc"), agent.AgentProcess(proc.pid, "agent", "/", None, None)
        )
    finally:
        proc.kill()
        proc.wait()
    assert (read.values, read.blank) == ({}, blank)
    assert (view.env is None) == blank
    assert ("still starting" in view.errors.get("environ", "")) == blank


def test_read_environ_error_names_the_path_only() -> None:
    with pytest.raises(OSError) as caught:
        agent.read_environ(Path("/proc"), 0)
    assert "environ" in str(caught.value)


def test_discover_lists_the_procfs_it_is_given(tmp_path: Path) -> None:
    found = agent.discover(Path("/proc"), agentpod.NODE)
    assert found.scanned > 1 and found.complete
    with pytest.raises(OSError):
        agent.discover(tmp_path / "nothing")
    assert agent.agent_config(tmp_path / "nothing") == {}


def test_scan_stops_at_max_pids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent, "MAX_PIDS", 3)
    _, scanned, complete = agent._scan(Path("/proc"), deadline=float("inf"))
    assert (scanned, complete) == (3, False)


def _start_as(tmp_path: Path, argv: str) -> subprocess.Popen[bytes]:
    """A real process whose argv is the Python expression ``argv`` (from ``agent run`` on: the
    Agent binary cannot be had here): Python started as ``agent`` on a directory ``run``
    holding ``__main__.py``."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "__main__.py").write_text(
        "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    code = f"import os, sys; os.execv(sys.executable, {argv})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


@pytest.fixture
def agent_run(tmp_path: Path) -> Iterator[int]:
    proc = _start_as(tmp_path, "[b'agent', b'run']")
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_scan_finds_an_agent_run_process_by_its_argv(agent_run: int) -> None:
    found, scanned, complete = agent._scan(Path("/proc"), deadline=float("inf"))
    assert (agent_run, "agent") in found
    assert complete and scanned >= len(found)
    assert agent.read_cmdline(Path("/proc"), agent_run) == ["agent", "run"]


def test_a_garbled_and_huge_command_line_is_read_capped(tmp_path: Path) -> None:
    """1 MB of arguments, some not UTF-8: the read stops at the cap, nothing raises, and the
    process is still recognised by its first arguments."""
    argv = "[b'agent', b'run', b'\\xff\\xfe-not-utf8'] + [b'x' * 100_000] * 10"
    proc = _start_as(tmp_path, argv)
    try:
        read = agent.read_cmdline(Path("/proc"), proc.pid)
        found, _, _ = agent._scan(Path("/proc"), float("inf"), only=[proc.pid])
    finally:
        proc.kill()
        proc.wait()
    assert read[:3] == ["agent", "run", "\ufffd\ufffd-not-utf8"]
    assert len("\0".join(read)) <= agent.CMDLINE_CAP
    assert found == [(proc.pid, "agent")]


def test_a_process_gone_before_its_read_is_passed_over(agent_run: int) -> None:
    """Between the listing and the read a process may exit: reaped (no entry left) or a
    zombie (an empty command line). Neither is an error, and the scan goes on."""
    reaped = subprocess.Popen(["sleep", "60"])
    zombie = subprocess.Popen(["true"])
    reaped.kill()
    reaped.wait()
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    try:
        only = [reaped.pid, zombie.pid, agent_run]
        found, scanned, complete = agent._scan(Path("/proc"), float("inf"), only=only)
        assert agent.read_cmdline(Path("/proc"), zombie.pid) == []
        with pytest.raises(FileNotFoundError) as caught:
            agent.read_cmdline(Path("/proc"), reaped.pid)
    finally:
        zombie.wait()
    assert (found, scanned, complete) == ([(agent_run, "agent")], 3, True)
    assert f"/proc/{reaped.pid}/cmdline" in str(caught.value)


def test_discover_keeps_only_the_pods_processes(agent_run: int) -> None:
    """This machine's cgroups are not a pod's: neither mode takes the process for the Agent."""
    own = agent.own_cgroup_path()
    assert agent_run not in [p.pid for p in agent.discover(Path("/proc"), own_path=own).processes]
    assert agent_run not in [p.pid for p in agent.discover(Path("/proc"), agentpod.NODE).processes]


def _entry(entries: list[agent.UnixEntry], inode: int) -> agent.UnixEntry:
    return next(e for e in entries if e.inode == inode)


def test_net_unix_shows_listening_sockets(socket_dir: Path) -> None:
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with stream, dgram:
        stream.bind(str(socket_dir / "apm.socket"))
        stream.listen(1)
        dgram.bind(str(socket_dir / "dsd.socket"))
        entries = agent.read_net_unix(Path("/proc"), os.getpid())
        held = agent.socket_inodes(Path("/proc"), os.getpid())
        inodes = {os.fstat(s.fileno()).st_ino for s in (stream, dgram)}
        assert inodes <= held
        by_path = {e.path: e for e in entries if e.inode in inodes}
        assert by_path[str(socket_dir / "apm.socket")].listening
        assert by_path[str(socket_dir / "apm.socket")].kind == "stream"
        assert by_path[str(socket_dir / "dsd.socket")].kind == "dgram"


def _me(role: str = "agent") -> agent.AgentProcess:
    return agent.AgentProcess(os.getpid(), role, "/", None, None)


def _judge(path: Path, held: dict[int, agent.AgentProcess], kind: str = "dgram") -> agent.Listener:
    entries = agent.read_net_unix(Path("/proc"), os.getpid())
    return agent.judge_listener(
        agent_path=str(path), own_path=str(path), kind=kind, entries=entries, held=held
    )


def test_listener_verdicts(socket_dir: Path) -> None:
    path = socket_dir / "dsd.socket"
    assert _judge(path, {}).verdict == ListenerVerdict.NOT_LISTENING
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        inode = os.fstat(sock.fileno()).st_ino
        agent_listening = _judge(path, {inode: _me()})
        assert (agent_listening.verdict, agent_listening.holder) == (ListenerVerdict.AGENT, _me())
        assert _judge(path, {}).verdict == ListenerVerdict.FOREIGN  # bound, but not by the Agent
    assert _judge(path, {}).verdict == ListenerVerdict.STALE  # the file stays, nobody listens
    path.unlink()
    stale_socket(path)
    assert _judge(path, {inode: _me()}).verdict == ListenerVerdict.STALE
    path.unlink()
    path.write_text("")
    assert _judge(path, {}).verdict == ListenerVerdict.NOT_SOCKET


def test_a_listener_bound_under_another_name_is_foreign(socket_dir: Path) -> None:
    """Bound through another path to the same file (another mount view): connect proves it."""
    (socket_dir / "a").mkdir()
    (socket_dir / "b").symlink_to(socket_dir / "a")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(socket_dir / "a" / "apm.socket"))
        sock.listen(1)
        listener = _judge(socket_dir / "b" / "apm.socket", {}, kind="stream")
    assert listener.verdict == ListenerVerdict.FOREIGN


def test_a_name_bound_in_another_mount_namespace_is_not_foreign(socket_dir: Path) -> None:
    """A shared network namespace lists every container's sockets: one bound under the Agent's
    name elsewhere, with nothing answering at the Agent's own path, is not a foreign listener;
    the helper's probe made as the Agent stands in for this process's own."""
    elsewhere = socket_dir / "dsd.socket"
    nothing_here = socket_dir / "agent-root" / "dsd.socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(elsewhere))
        judge = functools.partial(
            agent.judge_listener,
            agent_path=str(elsewhere),
            own_path=str(elsewhere),
            opened=str(nothing_here),
            kind="dgram",
            entries=agent.read_net_unix(Path("/proc"), os.getpid()),
            held={},
        )
        assert judge().verdict == ListenerVerdict.NOT_LISTENING
        probed = judge(probed=(ListenerVerdict.FOREIGN, "answered"))
        assert probed.verdict == ListenerVerdict.FOREIGN
        assert probed.note.startswith("socket inode ")


def test_agent_config_of_an_empty_or_missing_procfs_is_empty(tmp_path: Path) -> None:
    """What a bad procdir mount gives: nothing found, never an exception."""
    assert dict(agent.agent_config(tmp_path)) == {}
    assert dict(agent.agent_config(tmp_path / "absent")) == {}
