"""``selfcheck serve`` behind a web configuration, over real TLS, as its users meet it.

Certificates come from the real ``openssl`` (``tests/support/certs.py``); the server is a real
``selfcheck serve`` process; the clients are Python's ``ssl``, the real ``selfcheck probe``
and a real ``prometheus`` (Debian package) scraping over TLS with basic auth. No timing is
asserted: the side-by-side figures are in ``bench/http_load.py``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from tests.support.certs import Authority, Pair
from tests.support.run import base_env, selfcheck

PASSWORD = "s3cret-for-prometheus"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def auth(user: str = "prometheus", password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def client_context(ca: Path | None = None, pair: Pair | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile=ca)
    if pair is not None:
        context.load_cert_chain(pair.cert, pair.key)
    return context


def get(
    port: int, path: str, context: ssl.SSLContext, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


@contextlib.contextmanager
def serving(web: Path, log: Path, client: Pair | None = None) -> Iterator[int]:
    """``selfcheck serve --web.config.file web`` until its first cycle is done (asked with
    ``client``'s certificate where the server wants one)."""
    port = free_port()
    env = base_env({"SELFCHECK_INTERVAL": "1"})
    args = ["serve", "--listen", f"127.0.0.1:{port}", "--web.config.file", str(web)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfcheck", *args],
            env=env,
            stdout=out,
            stderr=out,
            cwd="/",
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(OSError):
                if get(port, "/startupz", client_context(pair=client))[0] == 200:
                    break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("pki"))


def web_config(directory: Path, pair: Pair, **tls: Any) -> Path:
    """TLS with ``pair``'s files copied beside the config (so a test can replace them)."""
    shutil.copy(pair.cert, directory / "server.crt")
    shutil.copy(pair.key, directory / "server.key")
    config = {
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", **tls},
        "basic_auth_users": {"prometheus": HASH},
        "http_server_config": {"headers": {"X-Frame-Options": "deny"}},
    }
    path = directory / "web.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def server(authority: Authority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    directory = tmp_path_factory.mktemp("served")
    web = web_config(directory, authority.issue("selfcheck"))
    with serving(web, directory / "serve.log") as port:
        yield port


def test_probes_answer_without_credentials_over_https(server: int) -> None:
    for path in ("/livez", "/startupz", "/readyz", "/readyz/procfs"):
        status, _body, headers = get(server, path, client_context())
        assert status in (200, 503), path  # readiness is the checks', never a 401
        assert "www-authenticate" not in headers
        assert headers["x-frame-options"] == "deny"


def test_metrics_and_status_need_the_password(server: int, authority: Authority) -> None:
    context = client_context(authority.cert)  # verified against the CA, name 127.0.0.1
    for path in ("/metrics", "/status"):
        status, body, headers = get(server, path, context)
        assert (status, body) == (401, b"Unauthorized\n"), path
        assert headers["www-authenticate"].startswith("Basic")
        status, body, _ = get(server, path, context, auth(password="wrong"))
        assert (status, body) == (401, b"Unauthorized\n"), path
        status, body, _ = get(server, path, context, auth(user="nobody"))
        assert status == 401
        status, body, _ = get(server, path, context, auth())
        assert status == 200, path
    assert b"selfcheck_check_status" in get(server, "/metrics", context, auth())[1]
    assert json.loads(get(server, "/status", context, auth())[1])["checks"]


def test_plain_http_on_the_tls_port_gets_no_answer(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert not sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_selfcheck_probe_speaks_tls(server: int, authority: Authority, tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n")
    listen = ["--listen", f"127.0.0.1:{server}", "--timeout", "10"]
    run = selfcheck(["probe", "live", *listen], {"SELFCHECK_WEB_CONFIG": str(web)})
    assert (run.code, run.stdout.strip()) == (0, "ok"), run.stderr
    verified = ["--web.config.file", str(web), "--ca-file", str(authority.cert)]
    run = selfcheck(["probe", "startup", *listen, *verified])
    assert (run.code, run.stdout.strip()) == (0, "ok"), run.stderr
    other = Authority(tmp_path / "other", "other")
    wrong_ca = ["--web.config.file", str(web), "--ca-file", str(other.cert)]
    run = selfcheck(["probe", "live", *listen, *wrong_ca])
    assert run.code == 1 and "CERTIFICATE_VERIFY_FAILED" in run.stderr


def test_require_and_verify_client_cert_refuses_a_client_without_one(
    authority: Authority, tmp_path: Path
) -> None:
    web = web_config(
        tmp_path,
        authority.issue("mtls"),
        client_auth_type="RequireAndVerifyClientCert",
        client_ca_file=str(authority.cert),
    )
    client = authority.issue("prometheus-client", san="DNS:prometheus", client=True)
    stranger = Authority(tmp_path / "stranger", "stranger").issue("x", client=True)
    with serving(web, tmp_path / "serve.log", client) as port:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            get(port, "/livez", client_context(authority.cert))
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            get(port, "/livez", client_context(authority.cert, stranger))
        assert get(port, "/livez", client_context(authority.cert, client))[0] == 200


def test_a_certificate_replaced_on_disk_is_served_at_the_next_handshake(
    authority: Authority, tmp_path: Path
) -> None:
    """The expired certificate is refused by a verifying client; once the files are replaced
    (a Secret update swaps them), the very next handshake gets the new one, no restart."""
    web = web_config(tmp_path, authority.issue("expired", expired=True))
    with serving(web, tmp_path / "serve.log") as port:
        verified = client_context(authority.cert)
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            get(port, "/livez", verified)
        fresh = authority.issue("fresh")
        for source, name in ((fresh.key, "server.key"), (fresh.cert, "server.crt")):
            shutil.copy(source, tmp_path / f"{name}.new")
            (tmp_path / f"{name}.new").rename(tmp_path / name)
        assert get(port, "/livez", verified)[0] == 200
        # a broken replacement keeps the last good pair, and says why in the log
        (tmp_path / "server.crt").write_text("not a certificate\n")
        assert get(port, "/livez", verified)[0] == 200
        log = (tmp_path / "serve.log").read_text()
        assert "web config reloaded" in log and "reload failed" in log


def test_a_real_prometheus_scrapes_over_tls_with_basic_auth(
    server: int, authority: Authority, tmp_path: Path
) -> None:
    """The scrape config an SRE writes for any exporter behind a web-config.yml: https, the CA,
    basic auth. A second job with a wrong password shows what Prometheus sees then."""
    tls = {"ca_file": str(authority.cert)}
    target = {"targets": [f"127.0.0.1:{server}"]}
    jobs = [
        {
            "job_name": name,
            "scheme": "https",
            "tls_config": tls,
            "basic_auth": {"username": "prometheus", "password": password},
            "scrape_interval": "1s",
            "static_configs": [target],
        }
        for name, password in (("selfcheck", PASSWORD), ("wrong", "not-it"))
    ]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log, stderr=log, cwd=tmp_path, start_new_session=True,
        )  # fmt: skip
    try:
        targets = _await_targets(port, proc, tmp_path / "prometheus.log")
        assert targets["selfcheck"]["health"] == "up", targets["selfcheck"]
        assert targets["wrong"]["health"] == "down"
        assert "401" in targets["wrong"]["lastError"]
        ready = _query(port, 'selfcheck_ready{job="selfcheck"}')
        assert len(ready) == 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _query(port: int, expr: str) -> list[Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        result: list[Any] = json.load(response)["data"]["result"]
    return result


def _await_targets(port: int, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """Both jobs scraped at least once (up or down, with the error Prometheus saw)."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        found: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            url = f"http://127.0.0.1:{port}/api/v1/targets"
            with urllib.request.urlopen(url, timeout=5) as response:
                active = json.load(response)["data"]["activeTargets"]
            found = {t["labels"]["job"]: t for t in active if t["health"] != "unknown"}
        if len(found) == 2 and _query(port, 'selfcheck_ready{job="selfcheck"}'):
            return found
        assert time.monotonic() < deadline, (found, log.read_text()[-3000:])
        time.sleep(0.5)


def test_min_version_and_allowed_sans_are_applied(authority: Authority, tmp_path: Path) -> None:
    """TLS13 as the minimum refuses a TLS 1.2 client; client_allowed_sans closes the connection
    of a verified client whose certificate names none of them."""
    web = web_config(
        tmp_path,
        authority.issue("strict"),
        min_version="TLS13",
        client_auth_type="RequireAndVerifyClientCert",
        client_ca_file=str(authority.cert),
        client_allowed_sans=["prometheus"],
    )
    allowed = authority.issue("allowed", san="DNS:prometheus", client=True)
    other = authority.issue("other", san="DNS:grafana", client=True)
    with serving(web, tmp_path / "serve.log", allowed) as port:
        old = client_context(authority.cert, allowed)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            get(port, "/livez", old)
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            get(port, "/livez", client_context(authority.cert, other))
        assert get(port, "/livez", client_context(authority.cert, allowed))[0] == 200
