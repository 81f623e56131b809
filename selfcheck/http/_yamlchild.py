"""The child side of ``selfcheck.http.yamldoc``: run as a script, never imported by the server.

``python -I -S -B _yamlchild.py <PyYAML's directory>`` reads a YAML document on stdin, loads it
with ``yaml.safe_load`` and writes one JSON object on stdout: ``{"document": <tagged>}`` or
``{"error": "<one line>"}``. It imports nothing but ``json``, ``sys`` and PyYAML, so it starts in
about 40 ms. The tagged form is ``yamldoc.decode``'s input: ``{"m": [[key, value]...]}`` a
mapping, ``{"l": [...]}`` a list, ``{"o": repr}`` any other value, scalars as they are.
"""

from __future__ import annotations

import json
import sys
from typing import Any

MAX_NODES = 100_000
MAX_DEPTH = 64


class TooLargeError(Exception):
    """More nodes than ``MAX_NODES`` once aliases are expanded, or deeper than ``MAX_DEPTH``."""


def encode(value: Any, budget: list[int], depth: int = 0) -> Any:
    """``value`` in the tagged form, counting nodes against ``budget``."""
    budget[0] -= 1
    if budget[0] < 0:
        raise TooLargeError(f"more than {MAX_NODES} nodes once aliases are expanded")
    if depth > MAX_DEPTH:
        raise TooLargeError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    deeper = depth + 1
    if isinstance(value, dict):
        pairs = [[encode(k, budget, deeper), encode(v, budget, deeper)] for k, v in value.items()]
        return {"m": pairs}
    if isinstance(value, list):
        return {"l": [encode(item, budget, deeper) for item in value]}
    return {"o": repr(value)}


def main() -> int:
    sys.path[:0] = sys.argv[1:2]
    import yaml

    answer: dict[str, Any]
    try:
        answer = {"document": encode(yaml.safe_load(sys.stdin.buffer.read()), [MAX_NODES])}
    except yaml.YAMLError as error:
        answer = {"error": " ".join(str(error).split())}
    except TooLargeError as error:
        answer = {"error": str(error)}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
