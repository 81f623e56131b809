"""TLS for the benchmarks: one web configuration shared by selfcheck and node-exporter.

The same ``web-config.yml`` (exporter-toolkit format) serves both, as an SRE would write it:
a certificate made by ``openssl`` for 127.0.0.1 and one basic-auth user hashed with bcrypt at
cost 10 (exporter-toolkit's documented example cost). Clients (``wrk``, the idle holder) do
not verify the certificate, as the kubelet's HTTPS probes do not.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import subprocess
from pathlib import Path

import bcrypt

USER = "prometheus"
PASSWORD = "bench-password"


def authorization() -> str:
    """The ``Authorization`` header value a scraper sends."""
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def web_config(directory: Path) -> Path:
    """``web.yml`` with TLS and one user, its certificate and key beside it."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    path = directory / "web.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: {directory / 'tls.crt'}\n"
        f"  key_file: {directory / 'tls.key'}\n"
        f"basic_auth_users:\n  {USER}: {hashed}\n"
    )
    return path


def unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def https_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=unverified())
    try:
        conn.request("GET", path, headers={"Authorization": authorization()})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
