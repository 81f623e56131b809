"""Reading a rendered manifest: bounded, and every malformed input one ``InputError``.

``selfcheck lint`` reads what ``helm template``, ``kubectl kustomize`` or ``kubectl get -o
yaml|json`` print. The input is capped (``MAX_BYTES``) before parsing, YAML is parsed with
``safe_load_all`` (the C loader when PyYAML has it), and the parsed tree is walked once with a
node budget: PyYAML shares aliased nodes instead of copying them, so an alias bomb loads in
little memory, but a walk over it would not end; the budget turns it into one clear error.
PyYAML is imported here only, so the sidecar never pays for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

MAX_BYTES = 16 * 1024 * 1024
"""Rendered Agent manifests are tens of KiB; 16 MiB leaves room for a whole release."""
MAX_NODES = 1_000_000
"""Values visited over all documents, counting each alias again (an alias bomb counts big)."""
MAX_DEPTH = 200

Obj = dict[str, Any]


class InputError(ValueError):
    """The input cannot be linted; the message is one line, shown as it is."""


def read_capped(stream: IO[bytes], name: str) -> str:
    """At most ``MAX_BYTES`` of ``stream`` as text; more is refused rather than truncated."""
    data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise InputError(f"{name} is larger than {MAX_BYTES // (1024 * 1024)} MiB, the lint limit")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{name} is not UTF-8 text (byte {error.start})") from None


def _yaml_documents(text: str) -> list[Any]:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a runtime dependency
        raise InputError("reading YAML needs PyYAML (pip install pyyaml)") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return list(yaml.load_all(text, Loader=loader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"not valid YAML{where}: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise InputError(f"not valid YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise InputError(f"not lintable: nesting deeper than {MAX_DEPTH} levels") from None


def parse_documents(text: str) -> list[Any]:
    """JSON (``kubectl get -o json``) or multi-document YAML, as plain Python values."""
    documents: list[Any] | None = None
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            documents = [json.loads(stripped)]
        except ValueError:
            pass  # a YAML flow mapping is not always JSON
        except RecursionError:
            raise InputError(f"not lintable: nesting deeper than {MAX_DEPTH} levels") from None
    if documents is None:
        documents = _yaml_documents(text)
    check_size(documents)
    return documents


def check_size(documents: list[Any]) -> None:
    """Walk every value once per reference, iteratively, within ``MAX_NODES``/``MAX_DEPTH``."""
    budget = MAX_NODES
    stack: list[tuple[Any, int]] = [(doc, 0) for doc in documents]
    while stack:
        value, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise InputError(
                f"not lintable: the documents expand to over {MAX_NODES:,} values "
                "(YAML aliases repeated: an alias bomb?)"
            )
        if depth > MAX_DEPTH:
            raise InputError(f"not lintable: nesting deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value if not isinstance(k, str))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def objects(documents: list[Any]) -> Iterator[Obj]:
    """Every Kubernetes object, with ``List`` (and ``*List``) items flattened."""
    pending = list(reversed(documents))
    while pending:
        doc = pending.pop()
        if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
            continue
        items = doc.get("items")
        if doc["kind"].endswith("List") and isinstance(items, list):
            pending.extend(reversed(items))
            continue
        yield doc
