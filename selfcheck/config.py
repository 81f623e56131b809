"""Configuration from the Agent's own environment, with flags layered on top.

The sidecar is meant to share the Agent container's ``env`` and ConfigMaps, so it reads the
Agent's variable names (``HOST_PROC``, ``DD_DOGSTATSD_SOCKET``...) and derives host paths the
way the Agent does (FACTS.md 3.1): ``/host/...`` when mounted, the plain path otherwise, so
the same binary checks a bare machine too. Every bad value raises ``ConfigError`` with one
line that names the variable, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_DOGSTATSD_SOCKET = "/var/run/datadog/dsd.socket"
DEFAULT_APM_SOCKET = "/var/run/datadog/apm.socket"
DEFAULT_HEALTH_PORT = 5555
DEFAULT_EXPVAR_PORT = 6000
DEFAULT_LISTEN = "0.0.0.0:9750"
DEFAULT_INTERVAL = 30.0
DEFAULT_CHECK_TIMEOUT = 2.0
DEFAULT_SAMPLE = 256
DEFAULT_HEARTBEAT_METRIC = "datadog.selfcheck.heartbeat"

# strconv.ParseBool, which the Agent's configuration layer uses for booleans.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


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
    expvar_port: int
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
    # origin detection (issue 10): the Agent's client-origin and unified-order switches, and
    # whether DD_EXPVAR_PORT was given (else the receipt tries the Agent's 5000, then 6000).
    origin_detection_client: bool = False
    origin_detection_unified: bool = False
    expvar_port_configured: bool = False
    external_env_present: bool = False
    entity_id_present: bool = False

    @property
    def stale_after(self) -> float:
        """Results older than three intervals are stale: the runner has stopped progressing."""
        return 3 * self.interval + self.check_timeout

    def with_overrides(self, **overrides: Any) -> Config:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _first_existing(*candidates: str) -> Path:
    for candidate in candidates[:-1]:
        if Path(candidate).exists():
            return Path(candidate)
    return Path(candidates[-1])


def parse_bool(name: str, raw: str | None, default: bool = False) -> bool:
    if raw is None or raw == "":
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def parse_port(name: str, raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        port = int(raw, 10)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name}={raw!r} is out of range (1-65535)")
    return port


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
    if raw is None or raw == "":
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not 1 <= value <= high:
        raise ConfigError(f"{name}={raw!r} is out of range (1-{high})")
    return value


def parse_listen(name: str, raw: str | None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``port``; an IPv6 host needs its brackets."""
    text = raw if raw else DEFAULT_LISTEN
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "0.0.0.0", text
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigError(f"{name}={raw!r}: an IPv6 address needs brackets, e.g. [::1]:9750")
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"{name}={raw!r}: an IPv6 address needs brackets, e.g. [::1]:9750")
    if not port:
        raise ConfigError(f"{name}={raw!r} has no port (e.g. 0.0.0.0:9750)")
    return host or "0.0.0.0", parse_port(name, port, 0)


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


def _path(env: Mapping[str, str], name: str, default: str) -> Path:
    raw = env.get(name) or default
    if "\x00" in raw:
        raise ConfigError(f"{name} contains a NUL byte")
    return Path(raw)


def _etc_file(env: Mapping[str, str], filename: str, host_default: str) -> Path:
    host_etc = env.get("HOST_ETC")
    if host_etc:
        return Path(host_etc) / filename
    return _first_existing(host_default, f"/etc/{filename}")


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


def _socket_setting(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw and "\x00" in raw:
        raise ConfigError(f"{name} contains a NUL byte")
    return raw or None


def load(
    known_checks: frozenset[str],
    env: Mapping[str, str] | None = None,
    euid: Callable[[], int] = os.geteuid,
) -> Config:
    """Read the whole configuration; the first bad value stops with ``ConfigError``."""
    env = os.environ if env is None else env
    host, port = parse_listen("SELFCHECK_LISTEN", env.get("SELFCHECK_LISTEN"))
    return Config(
        host_proc=_path(env, "HOST_PROC", str(_first_existing("/host/proc", "/proc"))),
        cgroup_root=_path(
            env,
            "DD_CONTAINER_CGROUP_ROOT",
            str(_first_existing("/host/sys/fs/cgroup", "/sys/fs/cgroup")),
        ),
        os_release_path=_etc_file(env, "os-release", "/host/etc/os-release"),
        passwd_path=_etc_file(env, "passwd", "/etc/passwd"),
        pod_logs_dir=_path(env, "SELFCHECK_POD_LOGS_DIR", "/var/log/pods"),
        dogstatsd_socket=_path(env, "DD_DOGSTATSD_SOCKET", DEFAULT_DOGSTATSD_SOCKET),
        apm_socket=_path(env, "DD_APM_RECEIVER_SOCKET", DEFAULT_APM_SOCKET),
        apm_socket_configured=bool(env.get("DD_APM_RECEIVER_SOCKET")),
        docker_host=_socket_setting(env, "DOCKER_HOST"),
        cri_socket_path=_socket_setting(env, "DD_CRI_SOCKET_PATH"),
        origin_detection=parse_bool(
            "DD_DOGSTATSD_ORIGIN_DETECTION", env.get("DD_DOGSTATSD_ORIGIN_DETECTION")
        ),
        logs_enabled=parse_bool("DD_LOGS_ENABLED", env.get("DD_LOGS_ENABLED")),
        health_port=parse_port("DD_HEALTH_PORT", env.get("DD_HEALTH_PORT"), DEFAULT_HEALTH_PORT),
        expvar_port=parse_port("DD_EXPVAR_PORT", env.get("DD_EXPVAR_PORT"), DEFAULT_EXPVAR_PORT),
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
        # The Agent's IsContainerized (DOCKER_DD_AGENT, set by its image); a pod always
        # has KUBERNETES_SERVICE_HOST, so the sidecar knows it is containerized without it.
        containerized=bool(env.get("DOCKER_DD_AGENT") or env.get("KUBERNETES_SERVICE_HOST")),
        origin_detection_client=parse_bool(
            "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT", env.get("DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT")
        ),
        origin_detection_unified=parse_bool(
            "DD_ORIGIN_DETECTION_UNIFIED", env.get("DD_ORIGIN_DETECTION_UNIFIED")
        ),
        expvar_port_configured=bool(env.get("DD_EXPVAR_PORT")),
        # Presence only: these values are never kept (an entity ID is a pod UID).
        external_env_present=bool(env.get("DD_EXTERNAL_ENV")),
        entity_id_present=bool(env.get("DD_ENTITY_ID")),
    )
