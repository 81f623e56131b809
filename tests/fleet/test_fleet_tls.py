"""``selfcheck fleet`` against a real ``prometheus`` that wants a client certificate.

Prometheus reads the same exporter-toolkit web configuration as selfcheck; here it requires
and verifies a client certificate made by ``openssl`` (``tests/support/certs.py``). fleet
gets through with ``--ca-file``, ``--cert-file`` and ``--key-file``, and without the
certificate says so in one line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.support.certs import Authority, Pair
from tests.support.run import selfcheck


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def prometheus(tmp_path: Path, authority: Authority, server: Pair) -> Iterator[int]:
    web = tmp_path / "web.yml"
    web.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": str(server.cert),
                    "key_file": str(server.key),
                    "client_auth_type": "RequireAndVerifyClientCert",
                    "client_ca_file": str(authority.cert),
                }
            }
        )
    )
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs: []\n")
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'd'}",
             f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web}"],
            stdout=log, stderr=log, cwd=tmp_path, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_fleet_presents_a_client_certificate(tmp_path: Path) -> None:
    authority = Authority(tmp_path / "pki")
    server = authority.issue("prometheus")
    client = authority.issue("fleet", san="DNS:fleet", client=True)
    with prometheus(tmp_path, authority, server) as port:
        base = [
            "fleet",
            "--prometheus",
            f"https://127.0.0.1:{port}",
            "--ca-file",
            str(authority.cert),
        ]
        with_cert = [*base, "--cert-file", str(client.cert), "--key-file", str(client.key)]
        run = selfcheck(with_cert, timeout=60)
        # an empty Prometheus: reached over mutual TLS, it has no selfcheck series
        assert run.code == 3 and "no selfcheck series" in run.stderr, run.stderr
        run = selfcheck(base, timeout=60)
        assert run.code == 3 and "no selfcheck series" not in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
        run = selfcheck([*base, "--cert-file", str(client.cert)], timeout=60)
        assert (run.code, run.stderr.strip()) == (
            3,
            "selfcheck fleet: --cert-file and --key-file go together",
        )
