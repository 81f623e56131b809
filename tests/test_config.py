"""Configuration: the Agent's variable names, /host fallbacks, and one clear line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfcheck.config import ConfigError, agent_bool, agent_int, load
from tests.support.run import selfcheck

IDS = frozenset({"procfs", "cgroups"})


def _bare(env: object) -> tuple[bool, str]:
    return False, ""


def _container(env: object) -> tuple[bool, str]:
    return True, "test"


def test_defaults_on_a_bare_machine() -> None:
    config = load(IDS, {}, euid=lambda: 0, containerized=_bare)
    host_proc = Path("/host/proc")
    assert config.host_proc == (host_proc if host_proc.exists() else Path("/proc"))
    assert config.dogstatsd_socket == Path("/var/run/datadog/dsd.socket")
    assert config.apm_socket == Path("/var/run/datadog/apm.socket")
    assert not config.apm_socket_configured
    assert (config.health_port, config.expvar_port) == (5555, None)
    assert config.expvar_ports == (5000, 6000)
    assert (config.listen_host, config.listen_port) == ("", 9750)
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
        ({"SELFCHECK_DOGSTATSD_MODE": "loud"}, "SELFCHECK_DOGSTATSD_MODE"),
        ({"SELFCHECK_SKIP": "procfs,bogus"}, "unknown check id bogus"),
        ({"SELFCHECK_SAMPLE": "0"}, "SELFCHECK_SAMPLE"),
        ({"SELFCHECK_POD_LOGS_DIR": "/a\x00b"}, "NUL"),
    ],
)
def test_bad_values_are_one_clear_line(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(IDS, env)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_in_a_container_a_missing_host_mount_is_never_replaced_by_the_containers_own() -> None:
    config = load(IDS, {}, containerized=_container)
    assert config.host_proc == Path("/host/proc")
    assert config.cgroup_root == Path("/host/sys/fs/cgroup")
    assert config.os_release_path == Path("/host/etc/os-release")
    assert config.passwd_path == Path("/etc/passwd")  # the chart mounts the host's there


def test_a_bare_machine_checks_itself() -> None:
    if Path("/host/proc").exists():
        pytest.skip("this machine has a /host/proc")
    config = load(IDS, {}, containerized=_bare)
    assert (config.host_proc, config.cgroup_root) == (Path("/proc"), Path("/sys/fs/cgroup"))
    assert config.os_release_path == Path("/etc/os-release")


# Go's strconv.ParseBool: what the Agent accepts for every boolean (through spf13/cast).
@pytest.mark.parametrize("raw", ["1", "t", "T", "TRUE", "true", "True"])
def test_agent_true_spellings(raw: str) -> None:
    assert agent_bool(raw) is True


@pytest.mark.parametrize("raw", ["0", "f", "F", "FALSE", "false", "False"])
def test_agent_false_spellings(raw: str) -> None:
    assert agent_bool(raw) is False


@pytest.mark.parametrize("raw", [" true", "true ", "yes", "no", "on", "tRuE", "\uff11", "2", ""])
def test_agent_rejected_booleans(raw: str) -> None:
    assert agent_bool(raw) is None


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("5555", 5555),
        ("+5555", 5555),
        ("5000.0", 5000),
        ("5000.", 5000),
        ("0x15B3", 5555),
        ("0o12663", 5555),
        ("012663", 5555),  # Go base 0: a leading zero is octal
        ("0b1010110110011", 5555),
        ("0x_15B3", 5555),
        ("-1", -1),
        ("0", 0),
    ],
)
def test_agent_numbers(raw: str, value: int) -> None:
    assert agent_int(raw) == value


@pytest.mark.parametrize("raw", [" 5555", "5555 ", "55_55", "5.5", "0x", "\uff15\uff15", "1e3", ""])
def test_agent_rejected_numbers(raw: str) -> None:
    assert agent_int(raw) is None


@pytest.mark.parametrize(
    ("env", "field", "value", "note"),
    [
        ({"DD_LOGS_ENABLED": " true"}, "logs_enabled", False, "DD_LOGS_ENABLED=' true'"),
        ({"DD_DOGSTATSD_ORIGIN_DETECTION": "yes"}, "origin_detection", False, "'yes'"),
        ({"DD_DOGSTATSD_ORIGIN_DETECTION": "T"}, "origin_detection", True, None),
        ({"DD_HEALTH_PORT": "abc"}, "health_port", 0, "DD_HEALTH_PORT='abc'"),
        ({"DD_HEALTH_PORT": "70000"}, "health_port", 0, "not a port"),
        ({"DD_HEALTH_PORT": "0x15B3"}, "health_port", 5555, None),
        ({"DD_EXPVAR_PORT": "6000.0"}, "expvar_port", 6000, None),
        (
            {"DD_DOGSTATSD_SOCKET": "/a\x00b"},
            "dogstatsd_socket",
            Path("/var/run/datadog/dsd.socket"),
            "NUL",
        ),
    ],
)
def test_the_agents_values_never_raise(
    env: dict[str, str], field: str, value: object, note: str | None
) -> None:
    config = load(IDS, env, containerized=_bare)
    assert getattr(config, field) == value
    if note is None:
        assert config.agent_notes == ()
    else:
        assert len(config.agent_notes) == 1 and note in config.agent_notes[0]


@pytest.mark.parametrize(
    "env",
    [
        {"DD_LOGS_ENABLED": " true"},
        {"DD_DOGSTATSD_ORIGIN_DETECTION": "yes"},
        {"DD_HEALTH_PORT": "not-a-port", "DD_EXPVAR_PORT": "-5"},
    ],
)
def test_bad_agent_values_are_reported_not_an_exit(env: dict[str, str]) -> None:
    listed = selfcheck(["list"], env)
    assert listed.code == 0, listed.stderr
    run = selfcheck(["check", "--only", "os_release", "--json"], env)
    assert run.code in (0, 1), run.stderr
    notes = run.json["configuration_notes"]
    assert notes and all(name.split("=")[0] in " ".join(notes) for name in env)
    table = selfcheck(["check", "--only", "os_release"], env)
    assert "agent setting:" in table.stdout


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, True),
        ({"SELFCHECK_SERVICE_CHECKS": "false"}, False),
        ({"SELFCHECK_DOGSTATSD_MODE": "connect"}, False),
        ({"SELFCHECK_DOGSTATSD_MODE": "connect", "SELFCHECK_SERVICE_CHECKS": "true"}, True),
    ],
)
def test_service_checks_are_on_unless_nothing_may_be_written(env: dict[str, str], on: bool) -> None:
    assert load(IDS, env, containerized=_bare).service_checks is on


def test_a_service_check_prefix_that_would_change_the_datagram_is_one_clear_line() -> None:
    assert load(IDS, {}, containerized=_bare).service_check_prefix == "selfcheck"
    for bad in ("a|b", "a b", "a#b", "a,b"):
        with pytest.raises(ConfigError) as caught:
            load(IDS, {"SELFCHECK_SERVICE_CHECK_PREFIX": bad}, containerized=_bare)
        assert "SELFCHECK_SERVICE_CHECK_PREFIX" in str(caught.value)
    with pytest.raises(ConfigError):
        load(IDS, {"SELFCHECK_SERVICE_CHECKS": "maybe"}, containerized=_bare)
