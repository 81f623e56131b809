"""The Dockerfile and its build context, read statically (the real build is test_container.py)."""

from __future__ import annotations

import json
import re

from selfcheck.config import DEFAULT_LISTEN, parse_listen
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


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_clean() -> None:
    run([tool("hadolint"), "--failure-threshold", "style", str(DOCKERFILE)])


def test_base_images_are_build_arguments_with_public_defaults() -> None:
    steps = _instructions()
    args = dict(rest.split("=", 1) for keyword, rest in steps if keyword == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert all(f.startswith("${PYTHON_IMAGE} AS ") for f in froms)


def test_final_stage_entrypoint_command_healthcheck_and_user() -> None:
    final = dict(_final_stage())
    assert json.loads(final["ENTRYPOINT"]) == ["selfcheck"]
    assert json.loads(final["CMD"]) == ["serve"]
    healthcheck = final["HEALTHCHECK"]
    assert json.loads(healthcheck[healthcheck.index("CMD ") + 4 :]) == [
        "selfcheck",
        "probe",
        "live",
    ]
    user, _, group = final["USER"].partition(":")
    assert user.isdigit() and int(user) != 0, "numeric and non-root, so runAsNonRoot can check it"
    assert group.isdigit()
    _, port = parse_listen("SELFCHECK_LISTEN", DEFAULT_LISTEN)
    assert final["EXPOSE"] == str(port)


def test_final_stage_installs_nothing() -> None:
    """Only the built venv is copied in; pip runs only to remove the base's own pip."""
    final = _final_stage()
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/selfcheck /opt/selfcheck"]
    for keyword, rest in final:
        if keyword == "RUN":
            assert "install" not in rest.replace("uninstall", "")
            assert not re.search(r"\b(apt|apt-get|gcc|cc|make)\b", rest)


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


def test_build_context_is_an_allowlist() -> None:
    lines = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "selfcheck"}
