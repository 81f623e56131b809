"""The web configuration's YAML, read by PyYAML where PyYAML does not stay resident.

``selfcheck serve`` reads its web configuration at start and again whenever the file changes.
Importing PyYAML costs the server 0.8 MB for as long as it runs, and dropping the modules
afterwards gives none of it back (``bench/results/footprint-floor.md``). So the serving
process hands the bytes to a short-lived child (``selfcheck/http/_yamlchild.py`` run with
``-I -S -B``: no environment, no ``site``, no bytecode written), which loads them with
``yaml.safe_load`` and answers with the document as tagged JSON. Short-lived commands
(``selfcheck probe``) load in their own process (``load_here``).

The tagged form keeps every distinction ``selfcheck.http.webconfig`` makes: mappings (with
keys of any type ``safe_load`` allows), lists, strings, integers, floats (``.inf`` included),
booleans and null; anything else ``safe_load`` can make (a date, ``!!binary``, ``!!set``)
comes back as an ``Other`` holding its ``repr``, which every field rejects as the wrong type,
as it would the original. Aliases are expanded in the answer, so a document of more than
100,000 nodes (a "billion laughs") or 64 levels is refused, as go-yaml
(``gopkg.in/yaml.v2`` ``decode.go``) refuses "excessive aliasing".
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHILD = "_yamlchild.py"
CHILD_SECONDS = 10.0
ANSWER_CAP = 16 * 1024 * 1024


class DocumentError(ValueError):
    """The bytes are not a YAML document that can be used; the message is one line."""


class ReaderError(DocumentError):
    """The child that reads the YAML did not answer (not started, killed, timed out)."""


@dataclass(frozen=True, slots=True)
class Other:
    """A value of a type no web configuration field takes; its ``repr`` is the original's."""

    shown: str

    def __repr__(self) -> str:
        return self.shown


def decode(tagged: Any) -> Any:
    """The document the child encoded (``_yamlchild.encode``), with ``Other`` for the values it
    could only show."""
    if not isinstance(tagged, dict):
        return tagged
    if "m" in tagged:
        return {decode(k): decode(v) for k, v in tagged["m"]}
    if "l" in tagged:
        return [decode(item) for item in tagged["l"]]
    return Other(str(tagged["o"]))


def load_here(raw: bytes) -> Any:
    """``yaml.safe_load`` in this process: for short-lived commands."""
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise DocumentError(" ".join(str(error).split())) from None


def load_in_child(raw: bytes) -> Any:
    """``yaml.safe_load`` in a child process, which exits before this returns.

    The child skips ``site`` (``-S``: half its start-up) and is told where PyYAML is instead,
    which ``find_spec`` finds here without importing it."""
    spec = importlib.util.find_spec("yaml")
    if spec is None or spec.origin is None:
        raise ReaderError("PyYAML is not installed")
    where = str(Path(spec.origin).parent.parent)
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-B", str(Path(__file__).with_name(CHILD)), where],
            input=raw,
            capture_output=True,
            timeout=CHILD_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ReaderError(f"no answer within {CHILD_SECONDS:g} s") from None
    except OSError as error:
        raise ReaderError(f"cannot start: {error.strerror or error}") from None
    try:
        answer = json.loads(done.stdout[:ANSWER_CAP]) if done.returncode == 0 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no answer"]
        raise ReaderError(f"exit {done.returncode}: {lines[-1][:200]}")
    if "error" in answer:
        raise DocumentError(str(answer["error"]))
    return decode(answer.get("document"))
