"""Every document the project's files name is one the repository ships.

A reader following a citation must find it: an upstream source is named by repository and
path, one of the project's own pages by its path here. A ``*.md`` path that is not in the
repository (a design note kept elsewhere, a page since moved) fails this test, and so does an
"issue N" with no repository: a bare number means nothing to someone with only the code.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("selfcheck", "tests", "bench", "docs", "k8s", "README.md", "Dockerfile")
MARKDOWN_PATH = re.compile(r"(?<![\w./-])((?:\.\./|\./)?[\w./-]*[\w-]\.md)\b")
BARE_ISSUE = re.compile(r"\b[Ii]ssue [0-9]+")
UPSTREAM = {
    # exporter-toolkit's page on the web configuration file, cited with its repository
    "docs/web-configuration.md",
}
"""Paths of other repositories' documents, each cited beside its repository's name."""


def tracked_files() -> list[Path]:
    """The repository's files under ``SCANNED``, as git lists them (no caches, no venvs)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--", *SCANNED],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [REPO / name for name in listed.split("\0") if name]


def resolves(name: str, source: Path) -> bool:
    """Whether ``name`` is a file of the repository, from its root or from ``source``'s folder,
    or (a bare file name) the name of some tracked file."""
    if name in UPSTREAM:
        return True
    if "/blob/" in name:  # a link to this repository's own file on its forge
        name = name.split("/blob/", 1)[1].split("/", 1)[1]
    if (REPO / name).is_file() or (source.parent / name).is_file():
        return True
    return "/" not in name and any(path.name == name for path in REPO.rglob(name))


def missing_documents(path: Path) -> list[str]:
    """The ``*.md`` names in ``path`` that the repository does not contain."""
    text = path.read_text(errors="replace")
    return [name for name in MARKDOWN_PATH.findall(text) if not resolves(name, path)]


def test_every_named_document_is_in_the_repository() -> None:
    problems = {
        str(path.relative_to(REPO)): names
        for path in tracked_files()
        if path.suffix not in {".json"} and (names := missing_documents(path))
    }
    assert problems == {}


def test_no_bare_issue_numbers() -> None:
    found = {
        str(path.relative_to(REPO)): BARE_ISSUE.findall(path.read_text(errors="replace"))
        for path in tracked_files()
    }
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_the_checks_find_a_missing_document(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    # Spelled in pieces, so that this file does not name them itself.
    facts, gone, issue = "FACTS" + ".md", "docs/gone" + ".md", "issue" + " 10"
    source.write_text(f'"""As {facts} 2.3 and {gone} say; see README.md and {issue}."""\n')
    assert missing_documents(source) == [facts, gone]
    assert BARE_ISSUE.findall(source.read_text()) == [issue]
