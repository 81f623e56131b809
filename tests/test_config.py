"""Configuration: the Agent's variable names, /host fallbacks, and one clear line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfcheck.config import ConfigError, load

IDS = frozenset({"procfs", "cgroups"})


def test_defaults_on_a_bare_machine() -> None:
    config = load(IDS, {}, euid=lambda: 0)
    host_proc = Path("/host/proc")
    assert config.host_proc == (host_proc if host_proc.exists() else Path("/proc"))
    assert config.dogstatsd_socket == Path("/var/run/datadog/dsd.socket")
    assert config.apm_socket == Path("/var/run/datadog/apm.socket")
    assert not config.apm_socket_configured
    assert (config.health_port, config.expvar_port) == (5555, 6000)
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 9750)
    assert (config.interval, config.check_timeout) == (30.0, 2.0)
    assert config.running_as_root


def test_agent_names_are_honoured() -> None:
    config = load(
        IDS,
        {
            "HOST_PROC": "/x/proc",
            "HOST_ETC": "/x/etc",
            "DD_CONTAINER_CGROUP_ROOT": "/x/cg",
            "DD_DOGSTATSD_ORIGIN_DETECTION": "true",
            "DD_LOGS_ENABLED": "1",
            "DD_APM_RECEIVER_SOCKET": "/run/apm.sock",
            "SELFCHECK_LISTEN": "[::1]:8080",
            "SELFCHECK_INTERVAL": "2.5s",
            "SELFCHECK_REQUIRE": "procfs, cgroups",
        },
        euid=lambda: 100,
    )
    assert config.host_proc == Path("/x/proc")
    assert config.passwd_path == Path("/x/etc/passwd")
    assert config.os_release_path == Path("/x/etc/os-release")
    assert config.cgroup_root == Path("/x/cg")
    assert config.origin_detection and config.logs_enabled and config.apm_socket_configured
    assert (config.listen_host, config.listen_port) == ("::1", 8080)
    assert config.interval == 2.5
    assert config.require == {"procfs", "cgroups"}
    assert not config.running_as_root


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"SELFCHECK_INTERVAL": "abc"}, "SELFCHECK_INTERVAL='abc' is not a duration"),
        ({"SELFCHECK_INTERVAL": "0"}, "out of range"),
        ({"SELFCHECK_CHECK_TIMEOUT": "-1"}, "out of range"),
        ({"SELFCHECK_LISTEN": ":70000"}, "out of range (1-65535)"),
        ({"SELFCHECK_LISTEN": "localhost:http"}, "is not a port number"),
        ({"SELFCHECK_LISTEN": "::1"}, "needs brackets"),
        ({"SELFCHECK_LISTEN": "0.0.0.0:"}, "has no port"),
        ({"DD_HEALTH_PORT": "0"}, "DD_HEALTH_PORT"),
        ({"DD_LOGS_ENABLED": "maybe"}, "is not a boolean"),
        ({"SELFCHECK_SKIP": "procfs,bogus"}, "unknown check id bogus"),
        ({"SELFCHECK_SAMPLE": "0"}, "SELFCHECK_SAMPLE"),
        ({"HOST_PROC": "/a\x00b"}, "NUL"),
    ],
)
def test_bad_values_are_one_clear_line(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(IDS, env)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)
