"""The web configuration's YAML read in a real short-lived child, as ``selfcheck serve`` reads it.

The child is the real interpreter running ``selfcheck/http/yamldoc.py``; what it answers must
be what ``yaml.safe_load`` gives in this process, down to the messages a bad file gets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from selfcheck.http import yamldoc
from selfcheck.http.webconfig import WebConfigError, parse, read_document
from selfcheck.http.yamldoc import DocumentError, Other, load_here, load_in_child
from tests.support.run import base_env

HASH = "$2b$04$" + "a" * 53


def test_the_child_answers_what_safe_load_gives_here() -> None:
    raw = (
        b"a: [1, 2.5, .inf, true, null, 'x']\n"
        b"1: one\n"
        b"when: 2024-01-02\n"
        b"blob: !!binary aGk=\n"
        b"nested: {b: {c: [[]]}}\n"
        b"2024-01-03: a date as a key\n"
    )
    here = load_here(raw)
    shown = {k: Other(repr(v)) if k in ("when", "blob") else v for k, v in here.items()}
    assert load_in_child(raw) == {
        Other("datetime.date(2024, 1, 3)") if not isinstance(k, str | int) else k: v
        for k, v in shown.items()
    }


@pytest.mark.parametrize(
    "text",
    [
        "tls_server_config: [\n",
        "basic_auth_users:\n  1: x\n",
        "basic_auth_users:\n  ? [a]\n  : x\n",
        f"basic_auth_users:\n  u: 2024-01-02\n  v: {HASH}\n",
        "tls_server_config:\n  cert_file: !!binary aGk=\n",
        "tls_server_config:\n  cipher_suites: !!set {a}\n",
        "- a\n",
        "",
    ],
)
def test_a_file_gets_the_same_verdict_read_here_or_in_the_child(tmp_path: Path, text: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)

    def verdict(load_yaml: Callable[[bytes], Any]) -> str:
        try:
            return repr(parse(path, read_document(path, load_yaml)))
        except WebConfigError as error:
            return str(error)

    assert verdict(load_in_child) == verdict(load_here)


def test_a_billion_laughs_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(DocumentError, match="more than 100000 nodes"):
        load_in_child("\n".join(lines).encode())


def test_a_self_referencing_or_deep_document_is_refused() -> None:
    with pytest.raises(DocumentError, match="nested deeper than 64"):
        load_in_child(b"&a [*a]")
    with pytest.raises(DocumentError, match="nested deeper than 64"):
        load_in_child(b"[" * 100 + b"]" * 100)


def test_a_reader_that_cannot_start_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(yamldoc.ReaderError, match="cannot start: No such file"):
        load_in_child(b"a: 1\n")


def test_the_servers_loader_leaves_pyyaml_out_of_the_process(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: {HASH}\n")
    code = (
        "import json, sys; from pathlib import Path; from selfcheck.http import webconfig\n"
        f"config, context = webconfig.load(Path({str(path)!r}))\n"
        "print(json.dumps([list(config.users), context is None, 'yaml' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=base_env(), capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [["prometheus"], True, False]
