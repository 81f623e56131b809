"""What only the Dockerfile's text can show: lint, the public base, no machine-specific trust.

Everything the image does (entrypoint, user, healthcheck, no build tools, the build context)
is tested on the built image in test_container.py.
"""

from __future__ import annotations

import re

from tests.deploy.tools import REPO, run, tool

DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_hadolint_clean() -> None:
    run([tool("hadolint"), "--failure-threshold", "style", str(DOCKERFILE)])


def test_base_images_are_build_arguments_with_public_defaults() -> None:
    steps = _instructions()
    args = dict(rest.split("=", 1) for keyword, rest in steps if keyword == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert all(f.startswith("${PYTHON_IMAGE} AS ") for f in froms)


def test_no_machine_specific_trust_in_the_dockerfile() -> None:
    """The CI machine's CA bundle belongs to its locally built base only (.ci/base-image.sh)."""
    text = DOCKERFILE.read_text()
    for needle in (
        "ca-certificates.crt",
        "pip.conf",
        "PIP_CERT",
        "REQUESTS_CA_BUNDLE",
        "--trusted-host",
    ):
        assert needle not in text
