"""The web configuration's YAML, read by PyYAML where PyYAML does not stay resident.

``selfcheck serve`` reads its web configuration at start and again whenever the file changes.
Importing PyYAML costs the server 0.8 MB for as long as it runs, and dropping the modules
afterwards gives none of it back (``bench/results/footprint-floor.md``). So the serving
process hands the bytes to a short-lived child, this file run as a script
(``python -I -B yamldoc.py``: no environment, no user site, no bytecode written), which loads
them with ``yaml.safe_load`` and answers with the document as tagged JSON. Short-lived
commands (``selfcheck probe``) load in their own process (``load_here``).

The tagged form keeps every distinction ``selfcheck.http.webconfig`` makes: mappings (with
keys of any type ``safe_load`` allows), lists, strings, integers, floats (``.inf`` included),
booleans and null; anything else ``safe_load`` can make (a date, ``!!binary``, ``!!set``)
comes back as an ``Other`` holding its ``repr``, which every field rejects as the wrong type,
as it would the original. Aliases are expanded in the answer, so a document of more than
``MAX_NODES`` nodes (a "billion laughs") or ``MAX_DEPTH`` levels is refused, as go-yaml
(``gopkg.in/yaml.v2`` ``decode.go``) refuses "excessive aliasing".
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_NODES = 100_000
MAX_DEPTH = 64
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


class TooLargeError(DocumentError):
    """More nodes than ``MAX_NODES``, or nested deeper than ``MAX_DEPTH``."""


def encode(value: Any, budget: list[int] | None = None, depth: int = 0) -> Any:
    """``value`` as JSON whose objects are tags: ``{"m": [[key, value]...]}`` a mapping,
    ``{"l": [...]}`` a list, ``{"o": repr}`` anything else; scalars as they are."""
    budget = [MAX_NODES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise TooLargeError(f"more than {MAX_NODES} nodes once aliases are expanded")
    if depth > MAX_DEPTH:
        raise TooLargeError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    deeper = depth + 1
    if isinstance(value, dict):
        return {
            "m": [[encode(k, budget, deeper), encode(v, budget, deeper)] for k, v in value.items()]
        }
    if isinstance(value, list):
        return {"l": [encode(item, budget, deeper) for item in value]}
    return {"o": repr(value)}


def decode(tagged: Any) -> Any:
    """The document ``encode`` was given, with ``Other`` for the values it could only show."""
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
    """``yaml.safe_load`` in a child process, which exits before this returns."""
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-B", str(Path(__file__).resolve())],
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


def _child() -> int:
    """The child's side: the document on stdin, one JSON object on stdout."""
    try:
        document = load_here(sys.stdin.buffer.read())
        answer: dict[str, Any] = {"document": encode(document)}
    except DocumentError as error:
        answer = {"error": str(error)}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
