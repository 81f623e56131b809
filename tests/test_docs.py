"""The check pages under docs/checks say what the code does.

Each page names every reason its check can give (the keys of its remediations, and
``not_enabled`` where the check is skipped when the Agent's configuration does not use it)
and every finding id it declares, so a user reading the page meets the words the report and
the metrics show.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from selfcheck.registry import all_checks
from tests.support.configs import make_config

DOCS = Path(__file__).resolve().parents[1] / "docs" / "checks"
GENERIC = {"io_error", "timeout", "exception"}
"""Reasons every check may give (an unexpected errno, the runner's deadline, a bug)."""


@pytest.mark.parametrize("cid", list(all_checks()))
def test_the_check_page_names_its_reasons(cid: str) -> None:
    spec = all_checks()[cid]
    page = (DOCS / f"{cid}.md").read_text(encoding="utf-8")
    source = inspect.getsource(inspect.getmodule(spec.run) or spec.run)
    reasons = {str(r) for r in spec.remediations} - GENERIC
    if "NOT_ENABLED" in source or spec.unused(make_config()):  # the runner's skip (settle)
        reasons.add("not_enabled")
    missing = sorted(r for r in reasons if f"`{r}`" not in page)
    assert not missing, f"docs/checks/{cid}.md does not name {missing}"


def test_the_security_page_names_every_finding() -> None:
    spec = all_checks()["security"]
    page = (DOCS / "security.md").read_text(encoding="utf-8")
    missing = sorted(f for f in spec.findings if f"`{f}`" not in page)
    assert not missing, missing
