"""Instant queries over Prometheus's HTTP API, every failure turned into one line.

``requests`` brings what a laptop needs to reach a production Prometheus: proxies from the
environment, TLS with a CA file, basic auth from the URL and a bearer token from a file.
Everything a remote server sends back (label values, errors) is stripped of terminal
escapes before it can reach the user's terminal, and a password is never printed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


class FleetError(Exception):
    """One line for the user; always exit 3."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample of an instant vector: its labels (cleaned) and its value."""

    labels: Mapping[str, str]
    value: float


def redact(url: str) -> str:
    """The URL as it may be printed: never the password of basic auth."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


class Prometheus:
    """Instant queries over ``POST /api/v1/query``; every failure becomes one ``FleetError``."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        token: str | None = None,
        verify: bool | str = True,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FleetError(f"--prometheus must be an http(s) URL, got {redact(url)!r}")
        self.url = url.rstrip("/")
        self.shown = redact(self.url)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.verify = verify
        self.session.headers["Accept"] = "application/json"
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        """Release the session's connections."""
        self.session.close()

    def _post(self, form: Mapping[str, str]) -> requests.Response:
        """One POST, its transport failures named (TLS, timeout, unreachable), never raised raw."""
        endpoint = f"{self.url}/api/v1/query"
        try:
            return self.session.post(endpoint, data=dict(form), timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise FleetError(
                f"TLS error talking to Prometheus at {self.shown}: {_first(exc)}"
            ) from None
        except requests.exceptions.Timeout:
            raise FleetError(
                f"Prometheus at {self.shown} did not answer within {self.timeout:g} s"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise FleetError(f"cannot reach Prometheus at {self.shown}: {_first(exc)}") from None

    def query(self, expr: str, at: float | None = None) -> tuple[str, Any]:
        """``(resultType, result)`` of one instant query, checked to be Prometheus's answer."""
        form = {"query": expr}
        if at is not None:
            form["time"] = f"{at:.3f}"
        response = self._post(form)
        if response.status_code in (401, 403):
            raise FleetError(
                f"Prometheus at {self.shown} refused the credentials (HTTP {response.status_code})"
            )
        body = _json_or_none(response)
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise FleetError(
                f"{self.shown} is not a Prometheus API (HTTP {response.status_code}, {kind}"
                " answer to /api/v1/query)"
            )
        if body["status"] == "error":
            what = clean(str(body.get("errorType", "error")))
            detail = clean(str(body.get("error", "")))[:200]
            raise FleetError(
                f"Prometheus at {self.shown} refused the query (HTTP {response.status_code},"
                f" {what}): {detail}"
            )
        data = body.get("data")
        if not isinstance(data, dict) or "resultType" not in data or "result" not in data:
            raise FleetError(f"{self.shown} answered /api/v1/query without data.resultType")
        return str(data["resultType"]), data["result"]

    def vector(self, expr: str, at: float) -> list[Sample]:
        """The samples of an instant vector query; anything else is one ``FleetError``."""
        kind, result = self.query(expr, at)
        if kind != "vector" or not isinstance(result, list):
            raise FleetError(f"{self.shown} answered {kind!r} where a vector was expected")
        samples = []
        for item in result:
            try:
                labels = {str(k): clean(str(v)) for k, v in item["metric"].items()}
                samples.append(Sample(labels, float(item["value"][1])))
            except (KeyError, IndexError, TypeError, ValueError, AttributeError):
                raise FleetError(f"{self.shown} answered a malformed vector sample") from None
        return samples

    def now(self) -> float:
        """Prometheus's clock, so a laptop's skew never shifts the evaluation instant."""
        kind, result = self.query("time()")
        try:
            at = float(result[0])
        except (ValueError, TypeError, IndexError, KeyError):
            at = math.nan
        if kind != "scalar" or not math.isfinite(at):
            raise FleetError(f"{self.shown} answered time() with {kind!r}")
        return at


def _json_or_none(response: requests.Response) -> Any:
    """The body as JSON, or None: a proxy's HTML page is reported, not raised."""
    try:
        return response.json()
    except ValueError:
        return None


def _first(exc: BaseException) -> str:
    """The errno message, which urllib3 wraps several levels deep in its own text."""
    text = str(exc)
    match = re.search(r"\[SSL: [A-Z_]+\] [^'\"(]+|\[Errno -?\d+\] [^'\")\]]+", text)
    return clean(match.group(0).strip() if match else text)[:160]


def clean(text: str) -> str:
    """Label values and errors come from a remote server: no terminal escapes reach the tty."""
    return _UNPRINTABLE.sub("?", text)
