"""Fixtures for the deployment tests: the rendered manifests, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.podspec import Obj, load_all
from tests.deploy.tools import K8S, REPO, run, tool

HELM_RENDER = Path(__file__).parent / "fixtures" / "helm-datadog-render.yaml"


@pytest.fixture(scope="session")
def kubectl() -> str:
    return tool("kubectl")


@pytest.fixture(scope="session")
def base_yaml(kubectl: str) -> str:
    """``kubectl kustomize k8s/``: the base with the sidecar component applied."""
    return run([kubectl, "kustomize", str(K8S)]).stdout


@pytest.fixture(scope="session")
def base_docs(base_yaml: str) -> list[Obj]:
    return load_all(base_yaml)


@pytest.fixture(scope="session")
def helm_yaml(kubectl: str) -> str:
    """The chart's render passed through the Helm post-renderer, as Helm would run it."""
    return run(
        [str(K8S / "helm" / "post-renderer.sh")],
        stdin=HELM_RENDER.read_text(),
        env={"KUBECTL": kubectl},
        cwd=REPO,
    ).stdout


@pytest.fixture(scope="session")
def helm_docs(helm_yaml: str) -> list[Obj]:
    return load_all(helm_yaml)
