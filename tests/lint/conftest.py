"""The renders lint is tested on: the project's own, the post-renderer's, the transcription."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.podspec import Obj, load_all, one, pod_spec
from tests.deploy.tools import K8S, REPO, run, tool

TRANSCRIPTION = REPO / "tests" / "deploy" / "fixtures" / "helm-datadog-render.yaml"


@pytest.fixture(scope="session")
def renders() -> dict[str, str]:
    """``kubectl kustomize k8s/``, the Helm post-renderer over the chart transcription, and
    the transcription itself (a chart render without the sidecar)."""
    kubectl = tool("kubectl")
    return {
        "kustomize": run([kubectl, "kustomize", str(K8S)]).stdout,
        "post-renderer": run(
            [str(K8S / "helm" / "post-renderer.sh")],
            stdin=TRANSCRIPTION.read_text(),
            env={"KUBECTL": kubectl},
            cwd=REPO,
        ).stdout,
        "transcription": TRANSCRIPTION.read_text(),
    }


@pytest.fixture(scope="session", params=["kustomize", "post-renderer"])
def sidecar_spec(request: pytest.FixtureRequest, renders: dict[str, str]) -> Obj:
    """The Agent pod spec with the sidecar, from each install path."""
    return pod_spec(one(load_all(renders[request.param]), "DaemonSet"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
