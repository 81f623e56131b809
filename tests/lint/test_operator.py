"""``selfcheck lint`` on DatadogAgent resources: the Operator's rules build the node Agent's pod.

The resources are the Operator's own examples (tests/lint/fixtures/operator/README.md names
their source) and small ones written here for one rule each. What is asserted is what a reviewer
sees: each check's status and reason, the exit code, and the resource's field path in the fix.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from selfcheck.lint import lint_text
from selfcheck.lint.operator import NEWEST, build
from selfcheck.lint.pod import PodTemplate
from selfcheck.lint.report import exit_code
from selfcheck.model import Status
from tests.deploy.tools import REPO

EXAMPLES = REPO / "tests" / "lint" / "fixtures" / "operator"
NEWEST_TEXT = ".".join(map(str, NEWEST))

# What every example's pod gets unless its row says otherwise: the Operator mounts no
# os-release in the agent (optional: failed, exit 1), sets DD_APM_RECEIVER_SOCKET in the
# trace-agent only, and leaves origin detection and logs off.
DEFAULT = {
    "os_release": "failed/enoent",
    "apm_socket": "skipped/not_enabled",
    "origin_detection": "skipped/not_enabled",
    "pod_logs": "skipped/not_enabled",
    "sidecar": "skipped/not_applicable",
}
DIFFERENT: dict[str, tuple[int, dict[str, str | None]]] = {
    # logs on: pod_logs is judged (ok); CWS/NPM/USM/GPU set hostPID, origin detection stays off
    "datadog-agent-all": (1, {"pod_logs": None}),
    "datadog-agent-with-logs-apm": (1, {"pod_logs": None}),
    # DogStatsD UDS off (OpenShift's advice): no DD_DOGSTATSD_SOCKET, applications send over UDP,
    # so the socket is not the install's transport and dogstatsd_udp judges the port
    "datadog-agent-on-openshift": (
        1,
        {"pod_logs": None, "dogstatsd_socket": "skipped/not_enabled"},
    ),
    # origin detection with UDS: the Operator sets hostPID itself, the check passes
    "datadog-agent-with-unix-socket": (1, {"origin_detection": None}),
}


def _examples() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


def _not_ok(text: str, version: str = "") -> dict[str, str]:
    (report,) = lint_text(text, version)
    return {r.check: f"{r.status}/{r.reason}" for r in report.results if r.status != "ok"}


def _built(text: str, version: tuple[int, int] = NEWEST) -> PodTemplate:
    (doc,) = [d for d in yaml.safe_load_all(text) if d]
    return build(doc, version)


def _lint(tmp_path: Path, text: str, *flags: str) -> tuple[int, str, str]:
    path = tmp_path / "datadogagent.yaml"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "selfcheck", "lint", "-f", str(path), *flags],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def test_every_operator_example_is_copied_and_linted() -> None:
    assert len(_examples()) == 32
    assert set(DIFFERENT) <= set(_examples())


@pytest.mark.parametrize("name", _examples())
def test_operator_example_predicts_its_verdicts(name: str) -> None:
    text = (EXAMPLES / f"{name}.yaml").read_text()
    code, changes = DIFFERENT.get(name, (1, {}))
    want = {k: v for k, v in {**DEFAULT, **changes}.items() if v is not None}
    reports = lint_text(text)
    # one pod per resource (the private action runner example holds three)
    kinds = [d.get("kind") for d in yaml.safe_load_all(text) if d]
    assert len(reports) == kinds.count("DatadogAgent")
    for report in reports:
        assert {
            r.check: f"{r.status}/{r.reason}" for r in report.results if r.status != "ok"
        } == want
    assert exit_code(reports) == code


def test_origin_detection_with_host_pid_overridden_off_fails_naming_the_field(
    tmp_path: Path,
) -> None:
    resource = _resource(
        {"features": {"dogstatsd": {"originDetectionEnabled": True}},
         "override": {"nodeAgent": {"hostPID": False}}}
    )  # fmt: skip
    code, out, err = _lint(tmp_path, resource, "--json")
    assert (code, err) == (2, "")
    (template,) = json.loads(out)["templates"]
    assert template["built_by"] == f"Operator {NEWEST_TEXT} rules"
    assert template["fields"]["hostPID"] == "spec.override.nodeAgent.hostPID"
    sidecar = next(c for c in template["checks"] if c["check"] == "sidecar")
    assert "node mode, k8s/node" in sidecar["message"]
    found = next(c for c in template["checks"] if c["check"] == "origin_detection")
    assert (found["status"], found["reason"], found["required"]) == ("failed", "not_host_pid", True)
    assert found["remediation"].startswith("Set spec.override.nodeAgent.hostPID: true")
    assert "spec.features.dogstatsd.originDetectionEnabled" in found["remediation"]
    assert "Helm" not in found["remediation"] and "datadog.dogstatsd" not in found["remediation"]
    code, table, _ = _lint(tmp_path, resource)
    assert code == 2
    assert table.splitlines()[0] == (
        f"DatadogAgent datadog (built by the Operator {NEWEST_TEXT} rules): containers agent, "
        "trace-agent"
    )
    assert "fix: Set spec.override.nodeAgent.hostPID: true" in table


def test_origin_detection_alone_sets_host_pid_and_its_env() -> None:
    pod = _built(_resource({"features": {"dogstatsd": {"originDetectionEnabled": True}}}))
    assert pod.host_pid is True
    assert pod.agent.env["DD_DOGSTATSD_ORIGIN_DETECTION"] == "true"
    assert pod.agent.env["DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT"] == "true"
    assert pod.fields["hostPID"].startswith("spec.features.dogstatsd.originDetectionEnabled")


def test_uds_off_gives_an_empty_dir_no_socket_and_no_host_pid() -> None:
    text = _resource(
        {"features": {"dogstatsd": {"originDetectionEnabled": True,
                                    "unixDomainSocketConfig": {"enabled": False}}}}
    )  # fmt: skip
    pod = _built(text)
    assert pod.host_pid is False
    assert "emptyDir" in pod.volumes["dsdsocket"]
    assert "DD_DOGSTATSD_SOCKET" not in pod.agent.env
    not_ok = _not_ok(text)
    # the install's transport is UDP: no socket to judge, and over UDP hostPID gates nothing
    assert not_ok["dogstatsd_socket"] == "skipped/not_enabled"
    assert "origin_detection" not in not_ok
    (report,) = lint_text(text)
    assert report.result("dogstatsd_udp").outcome.status == Status.OK
    assert exit_code([report]) == 1  # os_release only (optional)


def test_sockets_on_are_host_paths_of_their_directories() -> None:
    text = _resource(
        {"features": {"dogstatsd": {"unixDomainSocketConfig": {"path": "/run/dd/statsd.sock"}},
                      "apm": {"unixDomainSocketConfig": {"path": "/run/dd/trace.sock"}}}}
    )  # fmt: skip
    pod = _built(text)
    assert pod.volumes["dsdsocket"]["hostPath"] == {"path": "/run/dd", "type": "DirectoryOrCreate"}
    assert pod.volumes["apmsocket"]["hostPath"] == {"path": "/run/dd", "type": "DirectoryOrCreate"}
    assert pod.agent.env["DD_DOGSTATSD_SOCKET"] == "/var/run/datadog/statsd.sock"
    trace = pod.role("trace-agent")
    assert trace is not None
    assert trace.env["DD_APM_RECEIVER_SOCKET"] == "/var/run/datadog/trace.sock"
    assert "DD_APM_RECEIVER_SOCKET" not in pod.agent.env
    # apmsocket takes the place of dsdsocket in the trace-agent (one mount per path)
    assert trace.mount_named("apmsocket") is not None and trace.mount_named("dsdsocket") is None


def test_docker_socket_path_wins_over_cri_socket_path() -> None:
    both = {"dockerSocketPath": "/var/run/docker.sock", "criSocketPath": "/run/k3s/c.sock"}
    pod = _built(_resource({"global": both}))
    assert pod.agent.env["DOCKER_HOST"] == "unix:///host/var/run/docker.sock"
    assert "DD_CRI_SOCKET_PATH" not in pod.agent.env
    cri = _built(_resource({"global": {"criSocketPath": "/run/k3s/c.sock"}}))
    assert cri.agent.env["DD_CRI_SOCKET_PATH"] == "/host/run/k3s/c.sock"
    mount = cri.agent.mount_named("runtimesocketdir")
    assert mount is not None and (mount.mount_path, mount.host_path) == (
        "/host/run/k3s/c.sock",
        "/run/k3s/c.sock",
    )
    default = _built(_resource({}))
    mount = default.agent.mount_named("runtimesocketdir")
    assert mount is not None and (mount.mount_path, mount.host_path) == (
        "/host/var/run",
        "/var/run",
    )


def test_a_runtime_socket_out_of_reach_names_the_global_fields() -> None:
    text = _resource({"override": {"nodeAgent": {"volumes": [
        {"name": "runtimesocketdir", "emptyDir": {}}]}}})  # fmt: skip
    (report,) = lint_text(text)
    result = report.result("runtime_socket")
    assert (result.status, result.reason) == ("failed", "enoent")
    assert "spec.global.criSocketPath" in result.outcome.remediation
    assert "spec.override.nodeAgent.volumes" in result.outcome.remediation


def test_logs_mount_the_node_paths_and_gate_pod_logs() -> None:
    text = _resource({"features": {"logCollection": {"enabled": True}}})
    pod = _built(text)
    mount = pod.agent.mount_named("logpodpath")
    assert mount is not None and (mount.host_path, mount.read_only) == ("/var/log/pods", True)
    assert pod.agent.env["DD_LOGS_ENABLED"] == "true"
    (report,) = lint_text(text)
    assert (report.result("pod_logs").status, report.result("pod_logs").required) == ("ok", True)


def test_override_applies_image_env_security_context_and_volumes() -> None:
    node = {
        "image": {"name": "agent", "tag": "7.55.0"},
        "env": [{"name": "DD_DOGSTATSD_NON_LOCAL_TRAFFIC", "value": "yes"}],
        "securityContext": {"runAsUser": 100, "supplementalGroups": [999]},
        "containers": {"agent": {"securityContext": {"allowPrivilegeEscalation": False}}},
    }
    text = _resource({"override": {"nodeAgent": node}})
    pod = _built(text)
    assert pod.agent.image == "gcr.io/datadoghq/agent:7.55.0"
    assert pod.agent.uid == 100 and pod.supplemental_groups == (999,)
    assert pod.agent.security["readOnlyRootFilesystem"] is True  # override/container.go
    # Agent 7.55 runs process checks in process-agent: it gets the node's passwd, not the agent
    assert pod.role("process-agent") is not None
    assert pod.agent.mount_named("passwd") is None
    (report,) = lint_text(text)
    config = report.result("agent_config")
    assert (config.status, config.reason) == ("degraded", "bad_value")
    assert "spec.override.nodeAgent.env" in config.outcome.remediation
    security = report.result("security")
    assert all("spec.override.nodeAgent" in f.remediation for f in security.outcome.findings)


def test_process_discovery_default_changed_at_1_3() -> None:
    """Operator 1.3 turned processDiscovery (new then) and APM on by default; 1.21 runs the
    process checks in the core agent for Agent 7.60 and later."""
    text = (EXAMPLES / "datadog-agent-minimum.yaml").read_text()
    old, new = _built(text, (1, 2)), _built(text, (1, 3))
    assert [c.name for c in old.containers] == ["agent"]
    assert [c.name for c in new.containers] == ["agent", "trace-agent", "process-agent"]
    process = new.role("process-agent")
    assert process is not None and process.mount_named("passwd") is not None
    assert process.env["DD_PROCESS_CONFIG_PROCESS_DISCOVERY_ENABLED"] == "true"
    assert not any(c.mount_named("passwd") for c in old.containers)
    (before,) = lint_text(text, "1.2")
    (after,) = lint_text(text, "1.3")
    notes = after.result("passwd").outcome.details.get("notes", [])
    assert before.result("passwd").outcome.details.get("notes") is None
    assert notes == []  # process-agent runs as root with the node's passwd: nothing to note
    assert before.template.title.endswith("(built by the Operator 1.2 rules)")
    fix = before.result("passwd").outcome.remediation
    assert before.result("passwd").reason == "low_uid_coverage"
    assert "spec.features.processDiscovery.enabled" in fix
    (current,) = lint_text(text, "1.22")
    assert current.result("passwd").status == "ok"  # in the core agent with the node's passwd


def test_host_pid_from_system_probe_features_since_1_22() -> None:
    text = _resource({"features": {"npm": {"enabled": True}}})
    assert _built(text, (1, 21)).host_pid is False
    assert _built(text, (1, 22)).host_pid is True
    assert _built(text, (1, 22)).fields["hostPID"] == "spec.features.npm.enabled"


@pytest.mark.parametrize("version", ["0.9", "2.0", "banana", "1.99"])
def test_a_bad_operator_version_is_one_line_and_exit_3(tmp_path: Path, version: str) -> None:
    code, out, err = _lint(tmp_path, _resource({}), "--operator-version", version)
    assert (code, out) == (3, "")
    assert err.startswith("selfcheck: lint: --operator-version") and err.count("\n") == 1


def test_multi_document_list_and_kubectl_get_forms_agree(tmp_path: Path) -> None:
    text = (EXAMPLES / "datadog-agent-with-unix-socket.yaml").read_text()
    doc = yaml.safe_load(text)
    alone = lint_text(text)[0].to_json()
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "datadog"}}
    multi = yaml.safe_dump_all([namespace, doc])
    printed = {  # as kubectl get datadogagent -o yaml prints it
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                **doc,
                "metadata": {
                    **doc["metadata"],
                    "managedFields": [{"manager": "kubectl", "operation": "Update"}],
                    "resourceVersion": "4242",
                    "uid": "0b2c6a8e-1f55-4bb4-9d1e-5d2c3b1e7f00",
                },
                "status": {"agent": {"desired": 3, "ready": 3}, "conditions": []},
            }
        ],
        "metadata": {"resourceVersion": ""},
    }
    for form in (multi, yaml.safe_dump(printed), json.dumps(printed)):
        code, out, err = _lint(tmp_path, form, "--json")
        assert (code, err) == (1, "")
        assert json.loads(out)["templates"] == [alone]


def test_another_api_version_is_refused(tmp_path: Path) -> None:
    text = _resource({}).replace("datadoghq.com/v2alpha1", "datadoghq.com/v1alpha1")
    code, _, err = _lint(tmp_path, text)
    assert code == 3
    assert "only datadoghq.com/v2alpha1" in err


def _resource(spec: dict[str, Any]) -> str:
    doc = {
        "apiVersion": "datadoghq.com/v2alpha1",
        "kind": "DatadogAgent",
        "metadata": {"name": "datadog"},
        "spec": spec,
    }
    return yaml.safe_dump(doc)


BROKEN = {
    "features": {"logCollection": {"enabled": True},
                 "dogstatsd": {"unixDomainSocketConfig": {"enabled": False}}},
    "global": {"criSocketPath": "/run/containerd/containerd.sock"},
    "override": {"nodeAgent": {
        "hostPID": False,
        "env": [{"name": "DD_DOGSTATSD_ORIGIN_DETECTION", "value": "yes"},
                {"name": "HOST_PROC", "value": "/proc"}],
        "securityContext": {"runAsUser": 100},
        "volumes": [{"name": "cgroups", "emptyDir": {}},
                    {"name": "runtimesocketdir", "emptyDir": {}}],
        "containers": {"agent": {"healthPort": 0,
                                 "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}},
    }},
}  # fmt: skip


@pytest.mark.parametrize("name", ["broken", *_examples()])
def test_every_fix_names_a_field_of_the_resource_never_a_helm_value(name: str) -> None:
    text = _resource(BROKEN) if name == "broken" else (EXAMPLES / f"{name}.yaml").read_text()
    for report in lint_text(text):
        for result in report.results:
            fixes = [f.remediation for f in result.outcome.findings]
            if result.status not in ("ok", "skipped"):
                fixes.append(result.outcome.remediation)
            for text_ in fixes:
                assert "spec." in text_, (result.check, text_)
                assert "Helm" not in text_ and "datadog." not in text_, (result.check, text_)


def test_a_broken_resource_names_each_field_that_broke_it() -> None:
    (report,) = lint_text(_resource(BROKEN))
    fixes = {r.check: (str(r.status), str(r.reason), r.outcome.remediation) for r in report.results}
    assert fixes["procfs"][:2] == ("failed", "enoent")
    assert "spec.override.nodeAgent.env" in fixes["procfs"][2]  # HOST_PROC set there
    assert fixes["cgroups"][:2] == ("failed", "no_controllers")
    assert "spec.override.nodeAgent.volumes" in fixes["cgroups"][2]
    assert fixes["runtime_socket"][:2] == ("failed", "enoent")
    assert "spec.global.criSocketPath" in fixes["runtime_socket"][2]
    assert fixes["agent_health"][:2] == ("degraded", "bad_value")
    assert "spec.override.nodeAgent.containers.agent.healthPort" in fixes["agent_health"][2]
    assert fixes["agent_config"][2].startswith(
        "Set DD_DOGSTATSD_ORIGIN_DETECTION to true or false where the DatadogAgent sets it: "
        "spec.override.nodeAgent.env."
    )
    assert fixes["pod_logs"][:2] == ("failed", "eacces")
    assert exit_code([report]) == 2
