"""The spec-to-``docker run`` translation the container test relies on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.podspec import (
    HostPaths,
    Obj,
    UntranslatableError,
    docker_run_args,
    effective_security_context,
)


def _spec(**pod: object) -> Obj:
    return {
        "hostPID": True,
        "securityContext": {"runAsUser": 0},
        "containers": [
            {
                "name": "c",
                "securityContext": {"readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False},
                "env": [{"name": "A", "value": "1"}],
                "volumeMounts": [
                    {"name": "proc", "mountPath": "/host/proc", "readOnly": True,
                     "mountPropagation": "None"},
                    {"name": "dsd", "mountPath": "/var/run/datadog"},
                ],
            }
        ],
        "volumes": [
            {"name": "proc", "hostPath": {"path": "/proc"}},
            {"name": "dsd", "hostPath": {"path": "/var/run/datadog/", "type": "DirectoryOrCreate"}},
        ],
        **pod,
    }  # fmt: skip


def test_translates_pid_identity_hardening_mounts_and_env(tmp_path: Path) -> None:
    args = docker_run_args(_spec(), "c", HostPaths({"/var/run": tmp_path}))
    line = " ".join(args)
    assert "--pid host" in line
    assert "--user 0" in line
    assert "--read-only" in args
    assert "--security-opt no-new-privileges" in line
    assert "--security-opt seccomp=unconfined" in line, "the kubelet's default is Unconfined"
    assert "type=bind,source=/proc,target=/host/proc,bind-propagation=rprivate,readonly" in args
    dsd = f"type=bind,source={tmp_path}/datadog,target=/var/run/datadog,bind-propagation=rprivate"
    assert dsd in args
    assert (tmp_path / "datadog").is_dir(), "DirectoryOrCreate creates the directory"
    assert "A=1" in args


def test_no_host_pid_means_a_private_pid_namespace(tmp_path: Path) -> None:
    spec = _spec()
    del spec["hostPID"]
    assert "--pid" not in docker_run_args(spec, "c", HostPaths({"/var/run": tmp_path}))


def test_container_context_overrides_the_pods() -> None:
    spec = _spec()
    spec["containers"][0]["securityContext"]["runAsUser"] = 100
    assert effective_security_context(spec, "c")["runAsUser"] == 100


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["containers"][0]["env"].append({"name": "B", "valueFrom": {}}),
        lambda s: s["containers"][0]["volumeMounts"][0].update(subPath="x"),
        lambda s: (
            s["volumes"].append({"name": "cfg", "configMap": {"name": "x"}})
            or s["containers"][0]["volumeMounts"].append({"name": "cfg", "mountPath": "/cfg"})
        ),
        lambda s: s["securityContext"].update(seccompProfile={"type": "Localhost"}),
    ],
    ids=["valueFrom", "subPath", "configMap", "localhost-seccomp"],
)
def test_what_cannot_be_reproduced_fails_loudly(
    change: Callable[[Obj], object], tmp_path: Path
) -> None:
    spec = _spec()
    change(spec)
    with pytest.raises(UntranslatableError):
        docker_run_args(spec, "c", HostPaths({"/var/run": tmp_path}))
