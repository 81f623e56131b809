"""The exporter-toolkit web configuration: TLS, basic auth and extra headers, as exporters read it.

Every Prometheus exporter (node-exporter first) reads the same ``web-config.yml``
(prometheus/exporter-toolkit ``docs/web-configuration.md``), so an SRE writes it once. This
module reads that file the way exporter-toolkit does (``web/tls_config.go`` ``getConfig`` and
``ConfigToTLSConfig``, ``web/handler.go`` ``validateUsers`` and ``validateHeaderConfig``):

- unknown keys are errors (``yaml.UnmarshalStrict``), relative file names are relative to the
  file's directory (``SetDirectory``), TLS is on as soon as one TLS field is set and then needs
  a certificate and a key, ``min_version`` defaults to ``TLS12``;
- ``client_auth_type`` takes Go's five names (and the old ``RequireClientCert``), and a client
  CA without a policy that asks for a certificate is an error;
- ``basic_auth_users`` values must be bcrypt hashes; ``http_server_config.headers`` only the
  five headers exporter-toolkit allows, with its values for the enumerated ones.

Python's ``ssl`` differs from Go's ``crypto/tls`` in three places, each stricter or inert,
never looser (``docs/web-config.md``): a client certificate that is asked for is always
verified (Go's ``RequestClientCert`` and ``RequireAnyClientCert`` accept any), against
``client_ca_file`` or else the system's CAs as Go does; ``cipher_suites`` applies to TLS 1.2
only (as in Go) through OpenSSL's names; ``curve_preferences``, ``http2`` and ``rate_limit``
are accepted and validated but not applied (no API for them here; selfcheck speaks HTTP/1.1).

Files are re-read when they change, without a restart: ``WebConfigWatcher`` stats the
configuration file and every file it names at each new connection (a handful of ``stat`` calls
against a TLS handshake) and rebuilds the ``SSLContext`` when one changed; a bad reload keeps
the last good configuration and logs why once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfcheck.http.yamldoc import DocumentError, ReaderError, load_here, load_in_child
from selfcheck.logs import event, get_logger

MAX_FILE = 1024 * 1024

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
_CLIENT_AUTH_ALIASES = {"": "NoClientCert", "RequireClientCert": "RequireAnyClientCert"}

CIPHER_SUITES = {
    # Go's crypto/tls CipherSuites() (its secure list), by Go's name, to OpenSSL's name.
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    # TLS 1.3 suites: accepted as Go accepts them, and as in Go they change nothing.
    "TLS_AES_128_GCM_SHA256": "",
    "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
}
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")

HEADERS: Mapping[str, tuple[str, ...]] = {
    # exporter-toolkit web/handler.go extraHTTPHeaders: the only headers a file may set.
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_BCRYPT = re.compile(rb"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
_TLS_STRINGS = (
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
)
"""The ``tls_server_config`` fields that hold one string; the others are lists or a boolean."""
_KEYS: Mapping[str, frozenset[str]] = {
    "": frozenset({"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}),
    "tls_server_config": frozenset(
        {
            *_TLS_STRINGS,
            "cipher_suites",
            "curve_preferences",
            "prefer_server_cipher_suites",
            "client_allowed_sans",
        }
    ),
    "http_server_config": frozenset({"http2", "headers"}),
    "rate_limit": frozenset({"interval", "burst"}),
}


class WebConfigError(ValueError):
    """The file cannot be used; the message is one line that names the file and the field."""


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """``tls_server_config`` with paths made absolute; empty strings mean unset, as in Go."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""
    cert_file: str = ""
    key_file: str = ""
    client_auth_type: str = "NoClientCert"
    client_ca_file: str = ""
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: tuple[str, ...] | None = None

    client_auth_given: bool = False
    """``client_auth_type`` present in the file, even as ``NoClientCert``: that turns TLS on."""

    @property
    def enabled(self) -> bool:
        """exporter-toolkit's ``IsEnabled``: any TLS field set turns TLS on."""
        return any(
            (
                self.cert_file,
                self.cert,
                self.key_file,
                self.key,
                self.client_ca_file,
                self.client_ca,
                self.client_auth_given,
            )
        )

    def files(self) -> tuple[str, ...]:
        """The files the TLS context is built from: a change to one rebuilds it."""
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)


@dataclass(frozen=True, slots=True)
class WebConfig:
    """One parsed file: what the server applies to every new connection."""

    path: Path
    tls: TLSSettings = field(default_factory=TLSSettings)
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    inert: tuple[str, ...] = ()
    """Fields accepted for compatibility but not applied here (logged at start)."""

    def files(self) -> tuple[str, ...]:
        return (str(self.path), *self.tls.files())


def _fail(path: Path, message: str) -> WebConfigError:
    return WebConfigError(f"{path}: {message}")


def read_document(path: Path, load_yaml: Callable[[bytes], Any] = load_here) -> Any:
    """The YAML document, read with a cap; an empty file is an empty configuration.

    ``load_yaml`` is ``load_here`` for a short-lived command and ``load_in_child`` for the
    server, which must not keep PyYAML resident (``selfcheck.http.yamldoc``)."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE + 1)
    except OSError as error:
        raise _fail(path, f"cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_FILE:
        raise _fail(path, f"larger than {MAX_FILE} bytes")
    try:
        document = load_yaml(raw)
    except ReaderError as error:
        raise _fail(path, f"the YAML reader failed: {error}") from None
    except DocumentError as error:
        raise _fail(path, f"not YAML: {str(error)[:200]}") from None
    return {} if document is None else document


def _mapping(path: Path, value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, f"{where or 'the document'} must be a mapping")
    allowed = _KEYS.get(where)
    for key in value:
        if not isinstance(key, str):
            raise _fail(path, f"{where}: keys must be strings, got {key!r}")
        if allowed is not None and key not in allowed:
            shown = f"{where}.{key}" if where else key
            raise _fail(path, f"field {shown} not found (exporter-toolkit has no such field)")
    return dict(value)


def _string(path: Path, value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(path, f"{where} must be a string")
    return str(value)


def _strings(path: Path, value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(path, f"{where} must be a list")
    return tuple(_string(path, item, f"{where}[]") for item in value)


def _boolean(path: Path, value: Any, where: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _fail(path, f"{where} must be true or false")
    return value


def _joined(directory: Path, name: str) -> str:
    """exporter-toolkit's ``SetDirectory``: relative names are relative to the file."""
    return "" if not name else str(directory / name)


def parse_tls(path: Path, raw: dict[str, Any]) -> TLSSettings:
    where = "tls_server_config"
    fields = {k: _string(path, raw.get(k), f"{where}.{k}") for k in _TLS_STRINGS}
    auth = _CLIENT_AUTH_ALIASES.get(fields["client_auth_type"], fields["client_auth_type"])
    if auth not in CLIENT_AUTH_TYPES:
        raise _fail(path, f"invalid ClientAuth: {fields['client_auth_type']}")
    for name in ("min_version", "max_version"):
        if fields[name] and fields[name] not in TLS_VERSIONS:
            raise _fail(path, f"unknown TLS version: {fields[name]}")
    suites = _strings(path, raw.get("cipher_suites"), f"{where}.cipher_suites")
    unknown = [s for s in suites if s not in CIPHER_SUITES]
    if unknown:
        raise _fail(path, f"unknown cipher: {unknown[0]}")
    curves = _strings(path, raw.get("curve_preferences"), f"{where}.curve_preferences")
    bad_curves = [c for c in curves if c not in CURVES]
    if bad_curves:
        raise _fail(path, f"unknown curve: {bad_curves[0]}")
    sans = raw.get("client_allowed_sans")
    directory = path.parent
    return TLSSettings(
        cert=fields["cert"],
        key=fields["key"],
        client_ca=fields["client_ca"],
        cert_file=_joined(directory, fields["cert_file"]),
        key_file=_joined(directory, fields["key_file"]),
        client_auth_type=auth,
        client_ca_file=_joined(directory, fields["client_ca_file"]),
        cipher_suites=suites,
        curve_preferences=curves,
        min_version=fields["min_version"] or "TLS12",
        max_version=fields["max_version"] or "TLS13",
        prefer_server_cipher_suites=_boolean(
            path,
            raw.get("prefer_server_cipher_suites"),
            f"{where}.prefer_server_cipher_suites",
            True,
        ),
        client_allowed_sans=(
            None if sans is None else _strings(path, sans, f"{where}.client_allowed_sans")
        ),
        client_auth_given=bool(fields["client_auth_type"]),
    )


def parse_users(path: Path, raw: Any) -> dict[str, bytes]:
    """``basic_auth_users``: each value a bcrypt hash of cost 4 to 31 (Go's bcrypt.Cost)."""
    users = _mapping(path, raw, "basic_auth_users")
    parsed: dict[str, bytes] = {}
    for user, value in users.items():
        hashed = _string(path, value, f"basic_auth_users.{user}").encode()
        match = _BCRYPT.fullmatch(hashed)
        if match is None or not 4 <= int(match.group(1)) <= 31:
            raise _fail(path, f"basic_auth_users.{user}: not a bcrypt hash")
        parsed[user] = hashed
    return parsed


def parse_headers(path: Path, raw: Any) -> tuple[tuple[str, str], ...]:
    """exporter-toolkit's ``validateHeaderConfig``: five headers, enumerated values checked."""
    headers = _mapping(path, raw, "http_server_config.headers")
    parsed: list[tuple[str, str]] = []
    for name, value in headers.items():
        text = _string(path, value, f"headers.{name}")
        if name not in HEADERS:
            raise _fail(path, f"HTTP header {name!r} can not be configured")
        allowed = HEADERS[name]
        if allowed and text not in allowed:
            raise _fail(path, f"invalid value for {name}. Expected one of: {list(allowed)}")
        if any(c in text for c in "\r\n\x00"):
            raise _fail(path, f"headers.{name}: a header value cannot hold a line break")
        if text:
            parsed.append((name, text))
    return tuple(parsed)


def parse(path: Path, document: Any) -> WebConfig:
    """The whole file, checked as exporter-toolkit checks it; ``WebConfigError`` otherwise."""
    top = _mapping(path, document, "")
    tls_raw = _mapping(path, top.get("tls_server_config"), "tls_server_config")
    http_raw = _mapping(path, top.get("http_server_config"), "http_server_config")
    tls = parse_tls(path, tls_raw)
    inert = [f"tls_server_config.{k}" for k in ("curve_preferences",) if tls_raw.get(k)]
    if "http2" in http_raw:
        _boolean(path, http_raw["http2"], "http_server_config.http2", True)
        inert.append("http_server_config.http2")
    if top.get("rate_limit"):
        _mapping(path, top["rate_limit"], "rate_limit")
        inert.append("rate_limit")
    config = WebConfig(
        path=path,
        tls=tls,
        users=parse_users(path, top.get("basic_auth_users")),
        headers=parse_headers(path, http_raw.get("headers")),
        inert=tuple(inert),
    )
    if tls.enabled:
        check_tls(config)
    return config


def check_tls(config: WebConfig) -> None:
    """exporter-toolkit's ``validateTLSPaths`` and its policy checks, before any file is read."""
    tls, path = config.tls, config.path
    if not tls.cert_file and not tls.cert:
        raise _fail(path, "missing one of cert or cert_file")
    if not tls.key_file and not tls.key:
        raise _fail(path, "missing one of key or key_file")
    if (tls.client_ca_file or tls.client_ca) and tls.client_auth_type == "NoClientCert":
        raise _fail(path, "client CA's have been configured without a Client Auth Policy")
    if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        raise _fail(path, f"min_version {tls.min_version} is above max_version {tls.max_version}")


def load(path: Path) -> tuple[WebConfig, ssl.SSLContext | None]:
    """Read and check the file, and build its TLS context: what ``selfcheck serve`` needs at
    start, where any error is one line and exit 3. The YAML is read in a child process, so
    PyYAML never stays in the server."""
    config = parse(path, read_document(path, load_in_child))
    return config, build_context(config) if config.tls.enabled else None


# -- the TLS context ------------------------------------------------------------------------

_VERIFY = {
    # Python's ssl verifies every certificate it asks for: see the module docstring.
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


@contextlib.contextmanager
def _pem_file(text: str) -> Iterator[str]:
    """An inline PEM (``cert``, ``key``) as a path ``load_cert_chain`` can read, in memory
    only (``memfd_create``): a private key never touches a disk."""
    fd = os.memfd_create("selfcheck-pem", os.MFD_CLOEXEC)
    try:
        os.write(fd, text.encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def build_context(config: WebConfig) -> ssl.SSLContext:
    """The server's ``SSLContext``: certificate and key, client verification, versions,
    cipher suites. Every failure is a ``WebConfigError`` naming the file at fault."""
    tls, path = config.tls, config.path
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    suites = [CIPHER_SUITES[s] for s in tls.cipher_suites if CIPHER_SUITES[s]]
    if suites:
        try:
            ctx.set_ciphers(":".join(suites))
        except ssl.SSLError:
            raise _fail(path, "none of cipher_suites is available in this OpenSSL") from None
    _load_key_pair(ctx, config)
    _load_client_cas(ctx, config)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.num_tickets = (
        0  # probes and scrapes never resume a session: no ticket to make per handshake
    )
    return ctx


def _load_key_pair(ctx: ssl.SSLContext, config: WebConfig) -> None:
    tls, path = config.tls, config.path
    with contextlib.ExitStack() as stack:
        cert = tls.cert_file or stack.enter_context(_pem_file(tls.cert))
        key = tls.key_file or stack.enter_context(_pem_file(tls.key))
        try:
            ctx.load_cert_chain(cert, key)
        except FileNotFoundError as error:
            raise _fail(path, f"failed to read {error.filename or cert}: no such file") from None
        except OSError as error:  # ssl.SSLError is an OSError
            why = getattr(error, "reason", None) or error.strerror or str(error)
            raise _fail(path, f"failed to load X509KeyPair ({cert}, {key}): {why}") from None


def _load_client_cas(ctx: ssl.SSLContext, config: WebConfig) -> None:
    tls, path = config.tls, config.path
    ctx.verify_mode = _VERIFY[tls.client_auth_type]
    if ctx.verify_mode == ssl.CERT_NONE:
        return
    try:
        if tls.client_ca_file:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        elif tls.client_ca:
            ctx.load_verify_locations(cadata=tls.client_ca)
        else:  # Go verifies against the system's roots when ClientCAs is nil
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    except OSError as error:
        why = getattr(error, "reason", None) or error.strerror or str(error)
        raise _fail(path, f"cannot load the client CA ({tls.client_ca_file}): {why}") from None


def allowed_san(config: WebConfig, peercert: Mapping[str, Any] | None) -> bool:
    """exporter-toolkit's ``VerifyPeerCertificate``: with ``client_allowed_sans`` set, the
    client's verified certificate must carry one of them (DNS, IP, e-mail or URI)."""
    allowed = config.tls.client_allowed_sans
    if allowed is None:
        return True
    sans = (peercert or {}).get("subjectAltName", ())
    return any(value in allowed for _, value in sans)


# -- reloading --------------------------------------------------------------------------------


def _signature(files: tuple[str, ...]) -> tuple[tuple[int, int, int, int], ...]:
    """What tells a changed file: inode, size, mtime and ctime (a Secret's symlink swap
    changes the inode; an in-place rewrite the times)."""
    out = []
    for name in files:
        try:
            st = Path(name).stat()
        except OSError:
            out.append((-1, -1, -1, -1))
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Active:
    """The configuration a new connection is served under, and its TLS context."""

    config: WebConfig
    context: ssl.SSLContext | None


class WebConfigWatcher:
    """The current configuration, re-read when the file or one it names changes."""

    def __init__(
        self,
        path: Path,
        loader: Callable[[Path], tuple[WebConfig, ssl.SSLContext | None]] = load,
        logger: logging.Logger | None = None,
    ) -> None:
        self.path = path
        self._loader = loader
        self._logger = logger
        config, context = loader(path)
        self.active = Active(config, context)
        self._signature = _signature(config.files())
        self._failed: tuple[tuple[int, int, int, int], ...] | None = None

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS: decided at start, as exporter-toolkit's ``Serve``."""
        return self.active.context is not None

    def current(self) -> Active:
        """The configuration for a new connection: the same object until a file changes."""
        signature = _signature(self.active.config.files())
        if signature in (self._signature, self._failed):
            return self.active
        try:
            config, context = self._loader(self.path)
        except WebConfigError as error:
            self._failed = signature
            self._log(logging.ERROR, "web config reload failed: keeping the last good one", error)
            return self.active
        if (context is None) != (self.active.context is None):
            self._failed = signature
            why = WebConfigError(f"{self.path}: TLS cannot be switched on or off without a restart")
            self._log(logging.ERROR, "web config reload failed: keeping the last good one", why)
            return self.active
        self.active = Active(config, context)
        self._signature = _signature(config.files())
        self._failed = None
        self._log(logging.INFO, "web config reloaded", None)
        return self.active

    def _log(self, level: int, message: str, error: WebConfigError | None) -> None:
        logger = self._logger or get_logger()
        fields = {"file": str(self.path)}
        if error is not None:
            fields["error"] = str(error)
        event(logger, level, message, **fields)
