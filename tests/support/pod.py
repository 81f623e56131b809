"""Containers of one pod made from kernel parts: cgroups, a mount namespace, a root, an identity.

No kubelet runs here, so a "container" is built the way a runtime builds one, from the same
kernel features: the process joins ``/kubepods/besteffort/pod<uid>/<64 hex id>`` in the v1
hierarchies and the unified one (what the kubelet's cgroupfs driver creates), gets its own
mount namespace (``unshare -m``) with a tmpfs root holding the image's ``/usr`` read-only and
its volumes bind-mounted read-only or read-write, is ``chroot``ed into it (so its
``mountinfo`` lists exactly its own mount table), and runs as the identity and bounding set
``setpriv`` gives it. Two containers with the same pod UID are one pod; the PID namespace is
the machine's (hostPID), and so is the network namespace unless the pod gets one of its own
(``Pod.new_netns``, a pod without hostNetwork).

The Datadog Agent binary cannot be had here, so its process is played by ``AGENT_STANDIN``: a
Python program started with the argv ``agent run`` (a directory named ``run`` holding
``__main__.py``), which binds the DogStatsD socket (and the APM one) when asked, or plays
the Agent's counting DogStatsD listener and expvar port (``SA_COUNT``, the code of
``tests/support/agent_standin.py``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.run import REPO

VENV = Path("/opt/selfcheck-ci")
HIERARCHIES = ("memory", "pids", "cpu", "unified", "systemd")
# Docker's and containerd's default capability set, in setpriv's spelling.
DEFAULT_CAPS = (
    "chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
    "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write",
)  # fmt: skip

AGENT_STANDIN = """
import ctypes, os, signal, socket, sys, time
held = []
if os.environ.get("SA_UNDUMPABLE") == "1":  # what setuid and file-capability binaries get
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
if os.environ.get("SA_DSD") == "1":
    path = os.environ.get("DD_DOGSTATSD_SOCKET", "/var/run/datadog/dsd.socket")
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    os.chmod(path, 0o722)
    held.append(s)
if os.environ.get("SA_APM") == "1":
    path = os.environ.get("DD_APM_RECEIVER_SOCKET", "/var/run/datadog/apm.socket")
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(8)
    held.append(s)
if os.environ.get("SA_UDP") == "1":  # the Agent's UDP listener (listeners/udp.go)
    truthy = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool
    wide = os.environ.get("DD_DOGSTATSD_NON_LOCAL_TRAFFIC") in truthy
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = int(os.environ.get("DD_DOGSTATSD_PORT", "8125"))
    s.bind(("0.0.0.0" if wide else "127.0.0.1", port))
    held.append(s)
if os.environ.get("SA_EXPVAR") == "1":  # /debug/vars on 127.0.0.1, counting what is read
    import json, threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    maps = {key: {"Bytes": 0, "PacketReadingErrors": 0, "Packets": 0}
            for key in ("dogstatsd-udp", "dogstatsd-uds")}
    def count(sock, key):
        while True:
            data = sock.recv(65536)
            maps[key]["Packets"] += 1
            maps[key]["Bytes"] += len(data)
    for sock in held:
        if sock.type == socket.SOCK_DGRAM:
            key = "dogstatsd-uds" if sock.family == socket.AF_UNIX else "dogstatsd-udp"
            threading.Thread(target=count, args=(sock, key), daemon=True).start()
    class Vars(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(maps, sort_keys=True).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    server = HTTPServer(("127.0.0.1", int(os.environ.get("DD_EXPVAR_PORT", "5000"))), Vars)
    threading.Thread(target=server.serve_forever, daemon=True).start()
if os.environ.get("SA_COUNT") == "1":  # the Agent's counting listener and expvar port
    sys.path.insert(0, os.environ["SA_REPO"])
    from tests.support import agent_standin as counting
    counters = counting.Counters(0)
    path = os.environ.get("DD_DOGSTATSD_SOCKET", "/var/run/datadog/dsd.socket")
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(path)
    os.chmod(path, 0o722)
    held.append(s)
    import threading
    from http.server import ThreadingHTTPServer
    threading.Thread(target=counting.serve_socket, args=(s, counters), daemon=True).start()
    port = int(os.environ["DD_EXPVAR_PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), counting.make_handler(counters))
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(3600)
"""


TMPFS = "tmpfs"
HUNG = "hung"
"""A volume whose every access blocks: a FUSE mount of a file whose server never answers (the
``/dev/fuse`` descriptor is held open, unread, by the container's process), mounted in that
container's mount namespace only, as a hung NFS or FUSE mount of a node would be."""
FUSE_FD = 7


@dataclass(frozen=True)
class Volume:
    """``source`` on the machine at ``target`` in the container; ``source=None`` is procfs,
    ``source=TMPFS`` a tmpfs of the container's own (an emptyDir of medium Memory),
    ``source=HUNG`` a file whose every access blocks."""

    name: str
    source: str | None
    target: str
    read_only: bool = True
    recursive_read_only: bool = False
    """``recursiveReadOnly: IfPossible`` where the kernel honours it: every submount read-only
    too (cgroup v1 controllers), as the manifests in k8s/ mount the cgroups volume."""


def chart_volumes(dsd_dir: Path) -> list[Volume]:
    """The chart's default mount table (_daemonset-volumes-linux.yaml) on this machine."""
    return [
        Volume("procdir", None, "/host/proc"),
        Volume("cgroups", "/sys/fs/cgroup", "/host/sys/fs/cgroup"),
        Volume("os-release-file", "/etc/os-release", "/host/etc/os-release"),
        Volume("dsdsocket", str(dsd_dir), "/var/run/datadog", read_only=False),
        Volume("passwd", "/etc/passwd", "/etc/passwd"),
        Volume("runtimesocketdir", "/run", "/host/var/run"),
    ]


@dataclass
class Spec:
    """One container: its pod, mounts, identity, bounding set and environment."""

    pod: str
    volumes: list[Volume]
    env: dict[str, str] = field(default_factory=dict)
    uid: int = 0
    gid: int = 0
    caps: Sequence[str] = DEFAULT_CAPS
    container_id: str = field(default_factory=lambda: uuid.uuid4().hex + uuid.uuid4().hex)
    cgroup_parent: str | None = None
    private_cgroupns: bool = False
    read_only_root: bool = False
    host_pid: bool = True
    """False: a PID namespace of its own, with its own procfs (no hostPID)."""
    net_ns: str | None = None
    """A network namespace file (``Pod.new_netns``) shared by a pod's containers; ``None``:
    the machine's (hostNetwork)."""
    private_network: bool = False
    """A network namespace of its own (a pod without hostNetwork): only a loopback there."""

    @property
    def cgroup(self) -> str:
        parent = self.cgroup_parent or f"kubepods/besteffort/pod{self.pod}"
        return f"{parent}/{self.container_id}"


def new_pod() -> str:
    return str(uuid.uuid4())


def _mount_script(
    root: Path, volumes: Sequence[Volume], extra: Sequence[Volume], read_only_root: bool = False
) -> str:
    r = shlex.quote(str(root))
    hung = any(v.source == HUNG for v in volumes)
    lines = [f"exec {FUSE_FD}<>/dev/fuse"] if hung else []
    lines += [
        f"mount -t tmpfs -o mode=755 tmpfs {r}",
        f"mkdir -p {r}/usr {r}/proc {r}/dev {r}/tmp {r}/etc {r}/var/run",
        f"chmod 1777 {r}/tmp",
        f"for l in bin lib lib64 sbin; do ln -s usr/$l {r}/$l; done",
        f"mount --rbind /usr {r}/usr && mount -o remount,bind,ro {r}/usr",
        f"mount --rbind /dev {r}/dev",
        f"mount -t proc proc {r}/proc",
    ]
    for volume in (*extra, *volumes):
        target = shlex.quote(f"{root}{volume.target}")
        if volume.source is None:
            lines += [f"mkdir -p {target}", f"mount -t proc proc {target}"]
            if volume.read_only:
                lines.append(f"mount -o remount,ro {target}")
            continue
        if volume.source == HUNG:
            fuse = f"fd={FUSE_FD},rootmode=100000,user_id=0,group_id=0,allow_other"
            lines += [
                f"mkdir -p $(dirname {target}) && touch {target}",
                f"mount -i -t fuse -o {fuse} hung {target}",
            ]
            continue
        if volume.source == TMPFS:
            lines += [f"mkdir -p {target}", f"mount -t tmpfs -o mode=1777 tmpfs {target}"]
            continue
        source = shlex.quote(volume.source)
        make = (
            f"mkdir -p {target}"
            if Path(volume.source).is_dir()
            else (f"mkdir -p $(dirname {target}) && touch {target}")
        )
        lines += [make, f"mount --rbind {source} {target}"]  # a hostPath is a recursive bind
        if volume.read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
        if volume.recursive_read_only:
            below = shlex.quote(f"{root}{volume.target}/")
            lines.append(
                f"for m in $(awk -v p={below} 'index($5, p) == 1 {{print $5}}' "
                "/proc/self/mountinfo); do mount -o remount,bind,ro $m; done"
            )
    if read_only_root:  # the chart's readOnlyRootFilesystem: true
        lines.append(f"mount -o remount,ro {r}")
    return "\n".join(lines)


def _cgroup_script(cgroup: str) -> str:
    lines = []
    for h in HIERARCHIES:
        d = shlex.quote(f"/sys/fs/cgroup/{h}/{cgroup}")
        lines.append(f"mkdir -p {d} && echo $$ > {d}/cgroup.procs")
    return "\n".join(lines)


def _identity(spec: Spec) -> list[str]:
    caps = ",".join(["-all", *(f"+{c}" for c in spec.caps)])
    groups = ["--clear-groups"]
    return [
        "setpriv",
        f"--reuid={spec.uid}",
        f"--regid={spec.gid}",
        *groups,
        f"--bounding-set={caps}",
        "--inh-caps=-all",
    ]


def _entered(path: str, kind: str, holder: subprocess.Popen[str]) -> str:
    """``path`` once ``holder`` (``unshare``) has made the namespace it names (polled: it runs
    apart).

    A new PID namespace's ``pid_for_children`` is missing (``ENOENT``) from ``unshare(2)`` until
    its first process is forked, which has no reaper before (kernel/pid_namespace.c
    ``pidns_for_children_get``): a window a loaded machine hits. The file is waited for as long
    as ``holder`` runs; ``OSError`` once it has ended.
    """
    own = os.stat(f"/proc/self/ns/{kind}").st_ino
    for _ in range(2000):
        try:
            if os.stat(path).st_ino != own:
                return path
        except FileNotFoundError:
            if holder.poll() is not None:
                raise
        time.sleep(0.005)
    raise AssertionError(f"unshare did not make a {kind} namespace")


class Pod:
    """Starts containers of (possibly) several pods; stops every process and cgroup it made."""

    def __init__(self, own_node: bool = False) -> None:
        """``own_node``: every container joins a PID namespace made for this Pod, standing for
        the node's (as a kind node's is), so node mode sees these containers and no other
        test's; its PID 1 is named ``init``, as a node's is."""
        self.base = Path(tempfile.mkdtemp(prefix="sc-pod-", dir="/tmp"))
        self.base.chmod(0o755)
        self.standin = self.base / "standin"
        (self.standin / "run").mkdir(parents=True)
        (self.standin / "run" / "__main__.py").write_text(AGENT_STANDIN)
        self._procs: list[subprocess.Popen[str]] = []
        self._cgroups: list[str] = []
        self._n = 0
        try:
            self._node_pid = self._new_node() if own_node else ""
        except BaseException:
            self.close()  # a node that did not start leaves no process behind
            raise

    def _argv(self, spec: Spec, command: Sequence[str], extra: Sequence[Volume]) -> list[str]:
        self._n += 1
        root = self.base / f"root{self._n}"
        root.mkdir()
        self._cgroups.append(spec.cgroup)
        env = ["env", "-i", "PATH=/usr/bin:/bin", *(f"{k}={v}" for k, v in spec.env.items())]
        inner = "\n".join(
            [
                _mount_script(root, spec.volumes, extra, spec.read_only_root),
                "exec chroot "
                + shlex.quote(str(root))
                + " "
                + shlex.join([*_identity(spec), *env, *command]),
            ]
        )
        outer = "\n".join(
            [
                _cgroup_script(spec.cgroup),
                "exec "
                + (f"nsenter --net={shlex.quote(spec.net_ns)} " if spec.net_ns else "")
                + (f"nsenter --pid={shlex.quote(self._node_pid)} " if self._node_pid else "")
                + "unshare -m --propagation private "
                + ("--cgroup " if spec.private_cgroupns else "")
                + ("" if spec.host_pid else "--pid --fork --kill-child ")
                + ("--net " if spec.private_network else "")
                + "sh -euc "
                + shlex.quote(inner),
            ]
        )
        return ["sh", "-euc", outer]

    def new_netns(self) -> str:
        """A network namespace with its loopback up, held by a process of this pod: ports
        bound there (the Agent's 8125) clash with nothing else on the machine."""
        holder = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && echo ready && exec cat"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._procs.append(holder)
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            raise AssertionError("the pod's network namespace could not be made")
        return f"/proc/{holder.pid}/ns/net"

    def _new_node(self) -> str:
        init = self.base / "init"
        init.symlink_to("/usr/bin/sleep")  # the kernel names a process after the path it ran
        holder = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", str(init), "infinity"],
            start_new_session=True,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._procs.append(holder)
        try:
            return _entered(f"/proc/{holder.pid}/ns/pid_for_children", "pid", holder)
        except OSError:
            _, err = holder.communicate(timeout=10)
            raise AssertionError(f"the node's PID namespace did not start: {err}") from None

    def start_agent(self, spec: Spec, argv: Sequence[str] = ("agent", "run")) -> int:
        """Start the Agent stand-in with ``argv``; returns its PID once it says ready."""
        code = f"import os; os.chdir('/sa'); os.execv('/usr/bin/python3', {list(argv)!r})"
        command = ["/usr/bin/python3", "-c", code]
        extra = [Volume("standin", str(self.standin), "/sa")]
        if spec.env.get("SA_COUNT") == "1":  # the counting listener is imported from the repo
            spec.env.setdefault("SA_REPO", str(REPO))
            extra.append(Volume("repo", str(REPO), str(REPO)))
        proc = subprocess.Popen(
            self._argv(spec, command, extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"the Agent stand-in did not start: {line!r} {err[-2000:]}")
        return proc.pid

    def selfcheck(
        self, spec: Spec, args: Sequence[str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``selfcheck ARGS`` in a container of ``spec`` (the venv and the repo read-only)."""
        return subprocess.run(
            self._selfcheck_argv(spec, args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _selfcheck_argv(
        self, spec: Spec, args: Sequence[str], python: Sequence[str] = ("-m", "selfcheck")
    ) -> list[str]:
        spec.env.setdefault("PYTHONPATH", str(REPO))
        spec.env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        extra = [Volume("venv", str(VENV), str(VENV)), Volume("repo", str(REPO), str(REPO))]
        command = [str(VENV / "bin/python"), *python, *args]
        return self._argv(spec, command, extra)

    def popen_python(self, spec: Spec, code: str) -> subprocess.Popen[str]:
        """``python -c CODE`` in a container of ``spec``, with selfcheck importable: a test's
        own program driving selfcheck's runner from where the sidecar runs."""
        proc = subprocess.Popen(
            self._selfcheck_argv(spec, [], ("-c", code)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._procs.append(proc)
        return proc

    def stop(self, pid: int) -> None:
        """Kill the container whose first process is ``pid`` and reap it, as a runtime does
        when a container's main process exits (no zombie is left behind)."""
        for proc in self._procs:
            if proc.pid == pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                proc.communicate(timeout=30)
                return
        raise AssertionError(f"no container started with pid {pid}")

    def popen_selfcheck(self, spec: Spec, args: Sequence[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self._selfcheck_argv(spec, args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=10)
        for cgroup in self._cgroups:
            for h in HIERARCHIES:
                path = Path(f"/sys/fs/cgroup/{h}/{cgroup}")
                while path.name and path != Path(f"/sys/fs/cgroup/{h}"):
                    with contextlib.suppress(OSError):
                        path.rmdir()
                    path = path.parent
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def pods(own_node: bool = False) -> Iterator[Pod]:
    pod = Pod(own_node)
    try:
        yield pod
    finally:
        pod.close()


def env_of(values: Mapping[str, str]) -> dict[str, str]:
    return dict(values)
