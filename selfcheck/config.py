"""Configuration from the Agent's own environment, with flags layered on top.

The sidecar is meant to share the Agent container's ``env`` and ConfigMaps, so it reads the
Agent's variable names (``HOST_PROC``, ``DD_DOGSTATSD_SOCKET``...) and derives host paths the
way the Agent does (fixup_init.go): ``/host/...`` when mounted, the plain path otherwise, so
the same binary checks a bare machine too. In a container the plain paths are the
container's own, so there a missing ``/host`` mount is kept as the (missing) ``/host`` path
and the check that owns it names it, instead of silently checking the container.

Two kinds of values, two rules. ``DD_*`` values belong to the Agent: they are parsed as the
Agent parses them (``agent_bool``, ``agent_int``) and a value the Agent would reject never
stops selfcheck; it is kept as a note (``Config.agent_notes``) for the report and ``/status``.
``SELFCHECK_*`` values and flags are selfcheck's own: a bad one raises ``ConfigError`` with
one line that names the variable or the flag, never a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from selfcheck.agentpod import (
    DEFAULT_APM_SOCKET,
    DEFAULT_DOGSTATSD_PORT,
    DEFAULT_DOGSTATSD_SOCKET,
    DEFAULT_HEALTH_PORT,
    MODES,
)
from selfcheck.agentpod import EXPVAR_PORTS as AGENT_EXPVAR_PORTS

DEFAULT_LISTEN = ":9750"
"""Every address: IPv6 and IPv4 on one dual-stack socket where the kernel allows it."""
DEFAULT_INTERVAL = 30.0
DEFAULT_CHECK_TIMEOUT = 2.0
DEFAULT_SAMPLE = 256
DEFAULT_HEARTBEAT_METRIC = "datadog.selfcheck.heartbeat"
VIEW_CHOICES = ("auto", "own")
"""``auto``: the Agent container's view when it can be entered, else selfcheck's own."""
DEFAULT_SERVICE_CHECK_PREFIX = "selfcheck"
SOCKET, UDP = "socket", "udp"
"""The DogStatsD transports an install may offer applications (docs/checks/dogstatsd_udp.md)."""
OWN_SETTINGS = "this container's environment"
AGENT_SETTINGS = "the Agent's own environment"

# Go's strconv.ParseBool, which the Agent's configuration layer reaches through spf13/cast
# ToBoolE for every boolean setting (pkg/config/model, nodetreemodel GetBool): exactly these
# spellings, no trimming of whitespace; anything else is an error the Agent logs, reading false.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_SHOWN_CAP = 64
_T = TypeVar("_T")


class ConfigError(ValueError):
    """A setting the user gave cannot be used; the message is shown as it is."""


@dataclass(frozen=True, slots=True)
class Config:
    host_proc: Path
    cgroup_root: Path
    os_release_path: Path
    passwd_path: Path
    pod_logs_dir: Path
    dogstatsd_socket: Path
    apm_socket: Path
    apm_socket_configured: bool
    docker_host: str | None
    cri_socket_path: str | None
    origin_detection: bool
    logs_enabled: bool
    health_port: int
    expvar_port: int | None
    listen_host: str
    listen_port: int
    interval: float
    check_timeout: float
    sample_size: int
    dogstatsd_mode: str
    heartbeat_metric: str
    require: frozenset[str] = field(default_factory=frozenset)
    skip: frozenset[str] = field(default_factory=frozenset)
    running_as_root: bool = False
    containerized: bool = False
    containerized_because: str = ""
    origin_detection_client: bool = False
    origin_detection_unified: bool = False
    agent_notes: tuple[str, ...] = ()
    mode: str = "sidecar"
    """``sidecar`` (in the Agent's pod) or ``node`` (its own DaemonSet beside an Agent pod)."""
    settings_from: str = OWN_SETTINGS
    """Whose ``DD_*`` values decide required-ness: the Agent's own, when they could be read."""
    view: str = "auto"
    """``SELFCHECK_VIEW``: ``own`` keeps every verdict on selfcheck's own mounts."""
    service_checks: bool = False
    """``selfcheck serve`` sends each verdict as a DogStatsD service check (docs/datadog.md)."""
    service_check_prefix: str = DEFAULT_SERVICE_CHECK_PREFIX
    """Service checks are named ``<prefix>.<check id>``."""
    dogstatsd_socket_offered: bool = True
    """The install names a DogStatsD socket for applications: ``DD_DOGSTATSD_SOCKET`` is set
    (non-empty), which the chart and the Operator do when DogStatsD over UDS is on. In a
    container the environment is the install's, and unset means UDS off for applications (the
    Agent's own default differs by version: "" before, the socket path in current Linux builds);
    on a bare machine the Agent reads datadog.yaml, which selfcheck does not, so the socket's
    default path is kept."""
    dogstatsd_port: int = DEFAULT_DOGSTATSD_PORT
    """``DD_DOGSTATSD_PORT``: the Agent's UDP port, 0 when closed."""
    dogstatsd_non_local_traffic: bool = False
    """``DD_DOGSTATSD_NON_LOCAL_TRAFFIC``: the UDP port listens on every address, so other pods
    reach it; false, on the Agent's loopback only (comp/dogstatsd/listeners/udp.go)."""

    @property
    def expvar_ports(self) -> tuple[int, ...]:
        """The ports the Agent's expvar server may be on, in the order to try them."""
        return (self.expvar_port,) if self.expvar_port else AGENT_EXPVAR_PORTS

    # origin detection: presence only, never the values (an entity ID is a pod UID)
    external_env_present: bool = False
    entity_id_present: bool = False

    @property
    def dogstatsd_transport(self) -> str:
        """What the install offers applications in other pods: the socket when
        ``DD_DOGSTATSD_SOCKET`` is set (or when UDP is closed, the socket being all there is),
        UDP otherwise (the chart with ``useSocketVolume: false`` on Agents that leave the
        setting empty, the Operator with UDS off, GKE Autopilot)."""
        return SOCKET if self.dogstatsd_socket_offered or self.dogstatsd_port <= 0 else UDP

    @property
    def udp_offered(self) -> bool:
        """The UDP port is one applications in other pods may send to: open, and either the
        only transport or listening on every address."""
        open_port = self.dogstatsd_port > 0
        return open_port and (self.dogstatsd_transport == UDP or self.dogstatsd_non_local_traffic)

    @property
    def stale_after(self) -> float:
        """Results older than three intervals are stale: the runner has stopped progressing."""
        return 3 * self.interval + self.check_timeout

    def with_overrides(self, **overrides: Any) -> Config:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def parse_bool(name: str, raw: str | None, default: bool = False) -> bool:
    """A ``SELFCHECK_*`` boolean: the same spellings as the Agent's, but a bad one stops."""
    if raw is None or raw == "":
        return default
    value = agent_bool(raw)
    if value is None:
        raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")
    return value


def agent_bool(raw: str) -> bool | None:
    """Go's ``strconv.ParseBool``; ``None`` for what it rejects (the Agent then reads false)."""
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    return None


def _go_digits(text: str) -> int | None:
    """Go's ``strconv.ParseInt(s, 0, 0)``: 0x, 0o, 0b and a leading 0 (octal) prefixes,
    ``_`` only after a prefix, ASCII digits only, no surrounding space."""
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text.removeprefix("+"))
    if not body or not body.isascii() or body != body.strip():
        return None
    base = 10
    if body[:2].lower() in ("0x", "0o", "0b"):
        base = {"x": 16, "o": 8, "b": 2}[body[1].lower()]
        body = body[2:].removeprefix("_")
    elif len(body) > 1 and body[0] == "0":
        base, body = 8, body[1:].removeprefix("_")
    elif "_" in body:
        return None
    if not body or body.startswith("_") or body.endswith("_") or "__" in body:
        return None
    try:
        return sign * int(body, base)
    except ValueError:
        return None


def agent_int(raw: str) -> int | None:
    """spf13/cast ``ToIntE`` of a string, as the Agent's ``GetInt`` does it: a zero decimal
    part is dropped (``5000.0``), then Go's base-0 integer syntax; ``None`` when rejected."""
    text = re.sub(r"\.0*$", "", raw) if re.fullmatch(r"[-+]?[0-9]+\.0*", raw) else raw
    return _go_digits(text)


def shown(raw: str) -> str:
    """An allow-listed, non-secret value as a note shows it: quoted, capped."""
    return repr(raw if len(raw) <= _SHOWN_CAP else raw[:_SHOWN_CAP] + "...")


class AgentValues:
    """Reads the Agent's ``DD_*`` settings the Agent's way and collects what it would reject.

    Only the names selfcheck reads pass through here, all of them non-secret, so a note may
    quote the value.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.notes: list[str] = []

    def _read(
        self, name: str, default: _T, parse: Callable[[str], _T | None], rejected: str, read_as: _T
    ) -> _T:
        """``name`` parsed the Agent's way: ``default`` when unset or empty; when ``parse``
        rejects it, a note (``NAME='value' <rejected>``) and ``read_as``, what the Agent reads
        in its place."""
        raw = self._env.get(name)
        if not raw:
            return default
        value = parse(raw)
        if value is None:
            self.notes.append(f"{name}={shown(raw)} {rejected}")
            return read_as
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        rejected = (
            "is not a boolean the Agent accepts (Go strconv.ParseBool: true/false, 1/0, t/f, "
            "no spaces); the Agent reads it as false"
        )
        return self._read(name, default, agent_bool, rejected, False)

    def port(self, name: str, default: int | None) -> int | None:
        """A port, or ``None``/``0`` where the Agent would run without one."""
        rejected = "is not a number the Agent accepts; the Agent reads it as 0 (that server is off)"
        value = self._read(name, default, agent_int, rejected, 0)
        if value is not None and not 0 <= value <= 65535:  # only a value the environment gave
            self.notes.append(
                f"{name}={shown(self._env[name])} is not a port (0-65535); the Agent cannot bind it"
            )
            return 0
        return value

    def text(self, name: str) -> str | None:
        """A path or URL setting; a NUL byte (which no path can hold) is a note, not an exit."""
        raw = self._env.get(name)
        if not raw:
            return None
        if "\x00" in raw:
            self.notes.append(f"{name} contains a NUL byte; no file can have that name")
            return None
        return raw


def parse_port(name: str, raw: str | None, default: int) -> int:
    return _parse_whole(name, raw, default, 65535, "a port number")


def parse_seconds(name: str, raw: str | None, default: float, low: float, high: float) -> float:
    if raw is None or raw == "":
        return default
    text = raw.strip().removesuffix("s")
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a duration in seconds (e.g. 30 or 2.5s)"
        ) from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} is out of range ({low:g}-{high:g} seconds)")
    return value


def parse_positive_int(name: str, raw: str | None, default: int, high: int) -> int:
    return _parse_whole(name, raw, default, high, "a whole number")


def _parse_whole(name: str, raw: str | None, default: int, high: int, what: str) -> int:
    """A decimal number from 1 to ``high``; ``what`` names what a bad value is not."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if not 1 <= value <= high:
        raise ConfigError(f"{name}={raw!r} is out of range (1-{high})")
    return value


def parse_listen(name: str, raw: str | None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``:port`` or ``port``; an IPv6 host needs its brackets.

    An empty host means every address, dual-stack where the kernel allows it.
    """
    text = raw if raw else DEFAULT_LISTEN
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigError(f"{name}={raw!r}: an IPv6 address needs brackets, e.g. [::1]:9750")
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"{name}={raw!r}: an IPv6 address needs brackets, e.g. [::1]:9750")
    if not port:
        raise ConfigError(f"{name}={raw!r} has no port (e.g. 0.0.0.0:9750)")
    return host, parse_port(name, port, 0)


def parse_ids(name: str, raw: str | None, known: frozenset[str]) -> frozenset[str]:
    if not raw:
        return frozenset()
    ids = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = sorted(ids - known)
    if unknown:
        raise ConfigError(
            f"{name}: unknown check id {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return ids


def parse_choice(name: str, raw: str | None, default: str, choices: tuple[str, ...]) -> str:
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return raw


def parse_metric_name(name: str, raw: str | None, default: str) -> str:
    """A DogStatsD metric name: ``:`` ``|`` ``@`` ``#`` and whitespace would change the datagram."""
    if raw is None or raw == "":
        return default
    bad = sorted({c for c in raw if c in ":|@#," or c.isspace() or not c.isprintable()})
    if bad or len(raw) > 200:
        shown = " ".join(repr(c) for c in bad) or "its length"
        raise ConfigError(f"{name}={raw!r} is not a DogStatsD metric name (remove {shown})")
    return raw


def _host_path(
    agent: AgentValues, name: str | None, host_default: str, plain: str, containerized: bool
) -> Path:
    """The setting, else the ``/host`` mount when present, else the plain path on a bare
    machine only: in a container the plain path is the container's own, not the node's."""
    configured = agent.text(name) if name else None
    if configured:
        return Path(configured)
    if containerized or Path(host_default).exists():
        return Path(host_default)
    return Path(plain)


def _etc_file(agent: AgentValues, filename: str, host_default: str, containerized: bool) -> Path:
    host_etc = agent.text("HOST_ETC")
    if host_etc:
        return Path(host_etc) / filename
    return _host_path(agent, None, host_default, f"/etc/{filename}", containerized)


def unix_socket_file(setting: str | None) -> str | None:
    """The file behind a socket setting: ``unix:///x`` or ``/x``; ``None`` for tcp:// or unset.

    ``DD_CRI_SOCKET_PATH`` and ``DOCKER_HOST`` are read by several checks; this is the one place
    that says which file they name.
    """
    if not setting:
        return None
    scheme, sep, rest = setting.partition("://")
    if not sep:
        return setting
    return rest if scheme == "unix" and rest else None


def _selfcheck_path(env: Mapping[str, str], name: str, default: str) -> Path:
    raw = env.get(name) or default
    if "\x00" in raw:
        raise ConfigError(f"{name} contains a NUL byte")
    return Path(raw)


def _service_checks(env: Mapping[str, str]) -> bool:
    """On unless switched off, or unless ``SELFCHECK_DOGSTATSD_MODE=connect`` asked that
    nothing be written to the socket: a service check is not a metric series (nothing billed
    per custom metric) and goes to a socket the heartbeat already writes to."""
    mode = parse_choice(
        "SELFCHECK_DOGSTATSD_MODE", env.get("SELFCHECK_DOGSTATSD_MODE"), "send", ("send", "connect")
    )
    return parse_bool(
        "SELFCHECK_SERVICE_CHECKS", env.get("SELFCHECK_SERVICE_CHECKS"), mode == "send"
    )


def load(
    known_checks: frozenset[str],
    env: Mapping[str, str] | None = None,
    euid: Callable[[], int] = os.geteuid,
    containerized: Callable[[Mapping[str, str]], tuple[bool, str]] | None = None,
) -> Config:
    """Read the whole configuration; the first bad ``SELFCHECK_*`` value stops with
    ``ConfigError``, while the Agent's own values only ever add notes."""
    env = os.environ if env is None else env
    forced = env.get("SELFCHECK_CONTAINERIZED")
    if forced:
        in_container = parse_bool("SELFCHECK_CONTAINERIZED", forced)
        because = "SELFCHECK_CONTAINERIZED"
    else:
        if containerized is None:
            from selfcheck.host.container import detect_container

            containerized = detect_container
        in_container, because = containerized(env)
    agent = AgentValues(env)
    host, port = parse_listen("SELFCHECK_LISTEN", env.get("SELFCHECK_LISTEN"))
    apm_socket = agent.text("DD_APM_RECEIVER_SOCKET")
    dsd_socket = agent.text("DD_DOGSTATSD_SOCKET")
    return Config(
        host_proc=_host_path(agent, "HOST_PROC", "/host/proc", "/proc", in_container),
        cgroup_root=_host_path(
            agent, "DD_CONTAINER_CGROUP_ROOT", "/host/sys/fs/cgroup", "/sys/fs/cgroup", in_container
        ),
        os_release_path=_etc_file(agent, "os-release", "/host/etc/os-release", in_container),
        passwd_path=_etc_file(agent, "passwd", "/etc/passwd", False),
        pod_logs_dir=_selfcheck_path(env, "SELFCHECK_POD_LOGS_DIR", "/var/log/pods"),
        dogstatsd_socket=Path(dsd_socket or DEFAULT_DOGSTATSD_SOCKET),
        dogstatsd_socket_offered=dsd_socket is not None or not in_container,
        dogstatsd_port=agent.port("DD_DOGSTATSD_PORT", DEFAULT_DOGSTATSD_PORT) or 0,
        dogstatsd_non_local_traffic=agent.boolean("DD_DOGSTATSD_NON_LOCAL_TRAFFIC"),
        apm_socket=Path(apm_socket or DEFAULT_APM_SOCKET),
        apm_socket_configured=apm_socket is not None,
        docker_host=agent.text("DOCKER_HOST"),
        cri_socket_path=agent.text("DD_CRI_SOCKET_PATH"),
        origin_detection=agent.boolean("DD_DOGSTATSD_ORIGIN_DETECTION"),
        origin_detection_client=agent.boolean("DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT"),
        origin_detection_unified=agent.boolean("DD_ORIGIN_DETECTION_UNIFIED"),
        logs_enabled=agent.boolean("DD_LOGS_ENABLED"),
        health_port=agent.port("DD_HEALTH_PORT", DEFAULT_HEALTH_PORT) or 0,
        expvar_port=agent.port("DD_EXPVAR_PORT", None),
        listen_host=host,
        listen_port=port,
        interval=parse_seconds(
            "SELFCHECK_INTERVAL", env.get("SELFCHECK_INTERVAL"), DEFAULT_INTERVAL, 0.05, 86400
        ),
        check_timeout=parse_seconds(
            "SELFCHECK_CHECK_TIMEOUT",
            env.get("SELFCHECK_CHECK_TIMEOUT"),
            DEFAULT_CHECK_TIMEOUT,
            0.01,
            60,
        ),
        sample_size=parse_positive_int(
            "SELFCHECK_SAMPLE", env.get("SELFCHECK_SAMPLE"), DEFAULT_SAMPLE, 100_000
        ),
        dogstatsd_mode=parse_choice(
            "SELFCHECK_DOGSTATSD_MODE",
            env.get("SELFCHECK_DOGSTATSD_MODE"),
            "send",
            ("send", "connect"),
        ),
        heartbeat_metric=parse_metric_name(
            "SELFCHECK_HEARTBEAT_METRIC",
            env.get("SELFCHECK_HEARTBEAT_METRIC"),
            DEFAULT_HEARTBEAT_METRIC,
        ),
        require=parse_ids("SELFCHECK_REQUIRE", env.get("SELFCHECK_REQUIRE"), known_checks),
        skip=parse_ids("SELFCHECK_SKIP", env.get("SELFCHECK_SKIP"), known_checks),
        running_as_root=euid() == 0,
        containerized=in_container,
        containerized_because=because,
        mode=parse_choice("SELFCHECK_MODE", env.get("SELFCHECK_MODE"), "sidecar", MODES),
        view=parse_choice("SELFCHECK_VIEW", env.get("SELFCHECK_VIEW"), "auto", VIEW_CHOICES),
        service_checks=_service_checks(env),
        service_check_prefix=parse_metric_name(
            "SELFCHECK_SERVICE_CHECK_PREFIX",
            env.get("SELFCHECK_SERVICE_CHECK_PREFIX"),
            DEFAULT_SERVICE_CHECK_PREFIX,
        ),
        external_env_present=bool(env.get("DD_EXTERNAL_ENV")),
        entity_id_present=bool(env.get("DD_ENTITY_ID")),
        agent_notes=tuple(agent.notes),
    )


_REQUIRED_BY = (
    "origin_detection",
    "origin_detection_client",
    "origin_detection_unified",
    "logs_enabled",
    "apm_socket_configured",
    "dogstatsd_socket_offered",
    "dogstatsd_port",
    "dogstatsd_non_local_traffic",
)
"""The Agent's settings that decide which checks are required."""
_IN_ITS_CONTAINER = (
    *_REQUIRED_BY,
    "host_proc",
    "cgroup_root",
    "os_release_path",
    "passwd_path",
    "dogstatsd_socket",
    "apm_socket",
    "docker_host",
    "cri_socket_path",
    "health_port",
    "expvar_port",
)
"""And the paths and ports it derives from them, as its own container names them."""


def _taken(config: Config, theirs: Config, names: tuple[str, ...], **also: Any) -> Config:
    """``config`` with the fields ``names`` taken from ``theirs`` (the Agent's values)."""
    return replace(config, **{name: getattr(theirs, name) for name in names}, **also)


def with_agent_settings(
    config: Config,
    known_checks: frozenset[str],
    env: Mapping[str, str],
    agent_env: Mapping[str, str],
) -> Config:
    """The Agent's own allow-listed ``DD_*`` values decide which checks are required, ahead of
    this container's copy (a difference is drift, which ``agent_container`` reports)."""
    if not agent_env:
        return config
    decided = (config.containerized, config.containerized_because)
    theirs = load(known_checks, {**env, **agent_env}, containerized=lambda _env: decided)
    notes = tuple(dict.fromkeys((*config.agent_notes, *theirs.agent_notes)))
    return _taken(config, theirs, _REQUIRED_BY, agent_notes=notes, settings_from=AGENT_SETTINGS)


def in_agent_container(
    config: Config, known_checks: frozenset[str], agent_env: Mapping[str, str]
) -> Config:
    """The configuration as the Agent container has it: its allow-listed ``DD_*`` values and
    host paths as it derives them (always containerized: the Agent image sets
    ``DOCKER_DD_AGENT``, DataDog/datadog-agent pkg/config/setup/fixup_init.go), named inside
    its root. selfcheck's own settings (``SELFCHECK_*``, flags) are kept."""
    agent = (True, "the Agent's container")
    theirs = load(known_checks, dict(agent_env), containerized=lambda _env: agent)
    return _taken(
        config,
        theirs,
        _IN_ITS_CONTAINER,
        containerized=True,
        containerized_because=agent[1],
        agent_notes=theirs.agent_notes,
        settings_from=AGENT_SETTINGS,
    )
