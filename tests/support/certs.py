"""Certificates made by the real ``openssl`` command: a CA, server and client certificates.

``openssl ca`` with explicit start and end dates makes an already expired certificate, which
``openssl x509 -days`` cannot; everything else is ``openssl req`` and ``openssl x509``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

CA_CONFIG = """
[ca]
default_ca = ca_default
[ca_default]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = policy_any
copy_extensions = copy
[policy_any]
commonName = supplied
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


class Authority:
    """A throw-away CA in ``directory`` that signs server and client certificates."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = directory / f"{name}.crt"
        self.key = directory / f"{name}.key"
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", f"/CN=selfcheck test {name}",
            "-keyout", str(self.key), "-out", str(self.cert),
            cwd=directory,
        )  # fmt: skip
        (directory / "index.txt").write_text("")
        (directory / "serial").write_text("1000\n")
        self.config = directory / f"{name}.cnf"
        self.config.write_text(CA_CONFIG.format(dir=directory))

    def issue(
        self,
        name: str,
        san: str = "IP:127.0.0.1,DNS:localhost",
        client: bool = False,
        expired: bool = False,
    ) -> Pair:
        """A certificate for ``name`` signed by this CA; ``expired`` one ended in 2020."""
        key, csr, cert = (self.dir / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        usage = "clientAuth" if client else "serverAuth"
        openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}",
            "-addext", f"extendedKeyUsage={usage}", "-keyout", str(key), "-out", str(csr),
            cwd=self.dir,
        )  # fmt: skip
        dates = ("-startdate", "20200101000000Z", "-enddate", "20200102000000Z")
        openssl(
            "ca", "-batch", "-notext", "-config", str(self.config), "-cert", str(self.cert),
            "-keyfile", str(self.key), "-in", str(csr), "-out", str(cert),
            *(dates if expired else ("-days", "2")),
            cwd=self.dir,
        )  # fmt: skip
        return Pair(cert, key)
