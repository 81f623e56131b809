"""Who may read what: the web configuration applied to one connection.

The kubelet's probes carry no credentials, so ``/livez``, ``/readyz`` (and ``/readyz/<id>``)
and ``/startupz`` stay open; everything else (``/metrics``, ``/status``) needs the basic auth
of the web configuration when it has users, like every path of an exporter-toolkit exporter.
The policy is fixed per connection when it is accepted: a reloaded file applies to the next
connection, as exporter-toolkit applies a new TLS configuration to the next handshake.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from selfcheck.http.auth import BasicAuth
from selfcheck.http.webconfig import Active, WebConfig, WebConfigWatcher

OPEN_PATHS = frozenset({"/livez", "/readyz", "/startupz"})


def is_open(target: str) -> bool:
    """Whether a request target is a probe path, which never asks for credentials."""
    path = target.partition("#")[0].partition("?")[0].rstrip("/") or "/"
    return path in OPEN_PATHS or path.startswith("/readyz/")


@dataclass(frozen=True, slots=True)
class Policy:
    """What one connection is served under: extra headers and, with users, basic auth."""

    config: WebConfig
    headers: tuple[tuple[str, str], ...]
    auth: BasicAuth | None


@dataclass(frozen=True, slots=True)
class Pending:
    """A request whose credentials need a bcrypt comparison before it can be answered."""

    auth: BasicAuth
    header: str


class Gate:
    """The current TLS context and policy, from the watcher; one policy per configuration."""

    def __init__(self, watcher: WebConfigWatcher) -> None:
        self.watcher = watcher
        self._for: Active | None = None
        self._policy: Policy | None = None

    @property
    def tls(self) -> bool:
        return self.watcher.tls

    def current(self) -> tuple[ssl.SSLContext | None, Policy]:
        """For a new connection: re-read files that changed, then the context and policy."""
        active = self.watcher.current()
        if active is not self._for or self._policy is None:
            config = active.config
            auth = BasicAuth(config.users) if config.users else None
            self._policy = Policy(config, config.headers, auth)
            self._for = active
        return active.context, self._policy
