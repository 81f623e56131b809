"""The exporter-toolkit web configuration: read as exporter-toolkit reads it, or refused.

Files are written here and read by ``selfcheck.http.webconfig`` (what ``serve`` loads at start)
and by the real CLI, whose refusal is one line on stderr and exit 3, never a traceback.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
from pathlib import Path

import bcrypt
import pytest

from selfcheck.http.auth import BasicAuth, credentials
from selfcheck.http.webconfig import WebConfigError, WebConfigWatcher, load, parse
from tests.support.certs import Authority, Pair
from tests.support.run import selfcheck

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server(authority: Authority) -> Pair:
    return authority.issue("server")


def write(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


def test_the_exporter_toolkit_example_file_reads_as_it_does(tmp_path: Path, server: Pair) -> None:
    """exporter-toolkit docs/web-config.yml, with relative names: relative to the file."""
    shutil.copy(server.cert, tmp_path / "server.crt")
    shutil.copy(server.key, tmp_path / "server.key")
    path = write(
        tmp_path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  alice: {HASH}\n"
        'rate_limit:\n  interval: "1s"\n  burst: 20\n',
    )
    config, context = load(path)
    assert config.tls.cert_file == str(tmp_path / "server.crt")
    assert config.tls.min_version == "TLS12" and config.tls.client_auth_type == "NoClientCert"
    assert set(config.users) == {"alice"} and context is not None
    assert config.inert == ("rate_limit",)


def test_an_empty_file_is_plain_http_without_auth(tmp_path: Path) -> None:
    config, context = load(write(tmp_path, ""))
    assert context is None and not config.users and not config.tls.enabled


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("tls_server_config:\n  cert_file: a.crt\n", "missing one of key or key_file"),
        ("tls_server_config:\n  key_file: a.key\n", "missing one of cert or cert_file"),
        ("tls_server_config:\n  client_auth_type: NoClientCert\n", "missing one of cert"),
        ("tls_server_config:\n  certfile: a.crt\n", "field tls_server_config.certfile"),
        ("basic_auth_user:\n  a: b\n", "field basic_auth_user not found"),
        ("basic_auth_users:\n  alice: plain\n", "basic_auth_users.alice: not a bcrypt hash"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Always\n",
            "invalid ClientAuth: Always",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
            "client CA's have been configured without a Client Auth Policy",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS14\n",
            "unknown TLS version: TLS14",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [RC4]\n",
            "unknown cipher: RC4",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [P1]\n",
            "unknown curve: P1",
        ),
        (
            "http_server_config:\n  headers:\n    Server: x\n",
            "HTTP header 'Server' can not be configured",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "invalid value for X-Frame-Options",
        ),
        ("tls_server_config: [\n", "not YAML"),
        ("- a\n", "the document must be a mapping"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_field(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(WebConfigError) as caught:
        load(write(tmp_path, text))
    message = str(caught.value)
    assert says in message and "\n" not in message
    assert message.startswith(str(tmp_path / "web.yml"))


@pytest.mark.parametrize(
    ("given", "meaning"),
    [
        ("NoClientCert", "NoClientCert"),
        ("RequestClientCert", "RequestClientCert"),
        ("RequireAnyClientCert", "RequireAnyClientCert"),
        ("RequireClientCert", "RequireAnyClientCert"),  # kept by exporter-toolkit for old files
        ("VerifyClientCertIfGiven", "VerifyClientCertIfGiven"),
        ("RequireAndVerifyClientCert", "RequireAndVerifyClientCert"),
    ],
)
def test_client_auth_types_are_gos_names(
    tmp_path: Path, server: Pair, authority: Authority, given: str, meaning: str
) -> None:
    ca = "" if given == "NoClientCert" else f"  client_ca_file: {authority.cert}\n"
    text = (
        f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n"
        f"  client_auth_type: {given}\n{ca}"
    )
    config, context = load(write(tmp_path, text))
    assert config.tls.client_auth_type == meaning and context is not None


def test_a_key_that_does_not_match_is_refused(tmp_path: Path, authority: Authority) -> None:
    one, other = authority.issue("one"), authority.issue("other")
    text = f"tls_server_config:\n  cert_file: {one.cert}\n  key_file: {other.key}\n"
    with pytest.raises(WebConfigError, match="failed to load X509KeyPair"):
        load(write(tmp_path, text))


def test_inline_certificate_and_key_load_without_a_file(tmp_path: Path, server: Pair) -> None:
    cert = server.cert.read_text().replace("\n", "\n    ")
    key = server.key.read_text().replace("\n", "\n    ")
    text = f"tls_server_config:\n  cert: |\n    {cert}\n  key: |\n    {key}\n"
    config, context = load(write(tmp_path, text))
    assert context is not None and config.tls.files() == ()


@pytest.mark.parametrize("flag", [True, False])
def test_serve_refuses_a_bad_file_with_one_line_and_exit_3(tmp_path: Path, flag: bool) -> None:
    path = write(tmp_path, "tls_server_config:\n  cert_file: missing.crt\n  key_file: x.key\n")
    args = ["serve", "--listen", "127.0.0.1:1"]  # never bound: the file stops it first
    env = {}
    if flag:
        args += ["--web.config.file", str(path)]
    else:
        env["SELFCHECK_WEB_CONFIG"] = str(path)
    run = selfcheck(args, env, timeout=30)
    assert run.code == 3
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("selfcheck: web config: ") and "missing.crt" in lines[0]
    assert "Traceback" not in run.stderr


def test_a_bad_reload_keeps_the_last_good_configuration_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, f"basic_auth_users:\n  alice: {HASH}\n")
    watcher = WebConfigWatcher(path)
    first = watcher.current()
    path.write_text("basic_auth_users:\n  alice: not-a-hash\n")
    with caplog.at_level(logging.ERROR, logger="selfcheck"):
        assert watcher.current() is first
        assert watcher.current() is first  # the same bad file is logged once
    logged = [r for r in caplog.records if "reload failed" in r.getMessage()]
    assert len(logged) == 1
    assert "not a bcrypt hash" in json.dumps(logged[0].__dict__.get("fields"))
    path.write_text(f"basic_auth_users:\n  bob: {HASH}\n")
    assert set(watcher.current().config.users) == {"bob"}


def test_basic_auth_compares_with_bcrypt_and_caches_the_verdict() -> None:
    auth = BasicAuth(parse(Path("/w.yml"), {"basic_auth_users": {"alice": HASH}}).users)
    good = "Basic " + base64.b64encode(b"alice:secret").decode()
    bad = "Basic " + base64.b64encode(b"alice:wrong").decode()
    nobody = "Basic " + base64.b64encode(b"mallory:secret").decode()
    assert auth.verdict(good) is None  # not yet compared: the server runs it off the loop
    assert (auth.compute(good), auth.compute(bad), auth.compute(nobody)) == (True, False, False)
    assert (auth.verdict(good), auth.verdict(bad), auth.verdict(nobody)) == (True, False, False)
    assert auth.verdict("Bearer x") is False and credentials("Basic !!!") is None


def test_cipher_suites_are_gos_names_applied_to_tls_1_2(tmp_path: Path, server: Pair) -> None:
    text = (
        f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n"
        "  max_version: TLS12\n"
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n"
    )
    _, context = load(write(tmp_path, text))
    assert context is not None
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256"}
    assert context.maximum_version.name == "TLSv1_2"
