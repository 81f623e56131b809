"""``selfcheck.fleet.client``: every failure to reach Prometheus is one line, never a password."""

from __future__ import annotations

from selfcheck.fleet.client import redact
from tests.fleet.conftest import free_port
from tests.support.run import selfcheck
from tests.support.standins import WedgedListener


def test_unreachable_prometheus_is_one_line_without_the_password() -> None:
    port = free_port()
    run = selfcheck(["fleet", "--prometheus", f"http://ops:s3cret@127.0.0.1:{port}"])
    assert run.code == 3, run
    assert run.stderr == (
        f"selfcheck fleet: cannot reach Prometheus at http://***@127.0.0.1:{port}:"
        " [Errno 111] Connection refused\n"
    ), run.stderr


def test_a_prometheus_that_never_answers_is_a_bounded_wait() -> None:
    with WedgedListener() as wedged:
        url = f"http://127.0.0.1:{wedged.port}"
        run = selfcheck(["fleet", "--prometheus", url, "--timeout", "0.5"], timeout=20)
    assert run.code == 3, run
    assert run.stderr == f"selfcheck fleet: Prometheus at {url} did not answer within 0.5 s\n"


def test_redact_hides_basic_auth_only() -> None:
    assert redact("https://u:p@prom.example:9091/x") == "https://***@prom.example:9091/x"
    assert redact("http://127.0.0.1:9090") == "http://127.0.0.1:9090"
