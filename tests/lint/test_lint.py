"""``selfcheck lint`` end to end: the project's renders, the output forms, malformed input."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from selfcheck.cli import main
from selfcheck.lint import lint_text
from selfcheck.lint.catalog import agent_bool
from selfcheck.lint.loader import MAX_BYTES
from selfcheck.lint.report import exit_code
from selfcheck.model import Reason, Status
from tests.deploy.podspec import Obj, load_all, one, pod_spec
from tests.deploy.tools import REPO
from tests.lint.conftest import write

# What a correct default install still shows, and why: each is the runtime's verdict too.
EXPECTED_FINDINGS = {
    "root_not_needed",  # the chart's runAsUser 0; the runtime audit reports it the same way
    "no_seccomp",  # the chart sets no seccompProfile
    "privilege_escalation_allowed",  # the chart leaves allowPrivilegeEscalation unset
}
EXPLAINED_NOTES = (
    "readOnly without recursiveReadOnly",  # cgroup v1 submounts: the runtime sees them, not lint
    "not in the manifest, not judged",  # DD_API_KEY from a Secret: never read
    # The chart's trace-agent mounts runtimesocketdir (chart 3.240.0); the transcription and the
    # base do not yet. It is a note because the trace-agent's own use is not a gated check.
    "trace-agent: no hostPath mount covers a default runtime socket path",
)


def _lint(tmp_path: Path, text: str, *flags: str) -> tuple[int, str, str]:
    path = write(tmp_path, "input.yaml", text)
    result = subprocess.run(
        [sys.executable, "-m", "selfcheck", "lint", "-f", str(path), *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("name", ["kustomize", "post-renderer", "transcription"])
def test_project_renders_lint_without_failure(renders: dict[str, str], name: str) -> None:
    (report,) = lint_text(renders[name])
    for result in report.results:
        outcome = result.outcome
        assert result.status not in (Status.FAILED, Status.ERROR), result.to_json()
        if result.check == "security":
            # The chart's defaults cost the Agent nothing: ok, with the notes kept as findings.
            assert result.status is Status.OK
            found = {f.id for f in outcome.findings}
            # The base is ours: exactly these. The transcription may gain chart details.
            assert found == EXPECTED_FINDINGS if name == "kustomize" else found <= EXPECTED_FINDINGS
        elif result.check == "sidecar" and name == "transcription":
            assert result.status is Status.SKIPPED  # the chart alone renders no sidecar
        else:
            assert result.status in (Status.OK, Status.SKIPPED), result.to_json()
        for note in outcome.details.get("notes", []):
            assert any(e in note for e in EXPLAINED_NOTES), note
            # only the chart's own render lacks recursiveReadOnly; ours all carry it
            assert name == "transcription" or "recursiveReadOnly" not in note, note
    assert report.result("origin_detection").required
    assert report.result("dogstatsd_socket").required


def test_cli_table_fits_100_columns_and_exits_like_check(
    renders: dict[str, str], tmp_path: Path
) -> None:
    code, out, err = _lint(tmp_path, renders["kustomize"])
    assert code == 0, err  # the chart's security defaults are notes, not a degraded audit
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "DaemonSet datadog/datadog: containers agent, trace-agent, selfcheck"
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert lines[-1].endswith(". No required check would fail.")


def test_cli_failed_required_check_exits_2_with_fix(
    renders: dict[str, str], tmp_path: Path
) -> None:
    broken = renders["kustomize"].replace("hostPID: true", "hostPID: false")
    code, out, _ = _lint(tmp_path, broken)
    assert code == 2
    assert "FAILED    origin_detection  pod: hostPID is not true" in out
    assert "spec.hostPID: true (Helm value" in out
    assert "Required checks that would fail: datadog/origin_detection." in " ".join(out.split())


def test_json_and_list_input_give_the_same_verdicts(
    renders: dict[str, str], tmp_path: Path
) -> None:
    """``kubectl get ds -o json`` prints a List; JSON in, JSON out, same as the YAML."""
    listed = {"apiVersion": "v1", "kind": "List", "items": load_all(renders["kustomize"])}
    code, out, _ = _lint(tmp_path, json.dumps(listed), "--json")
    assert code == 0
    (template,) = json.loads(out)["templates"]
    from_yaml = lint_text(renders["kustomize"])[0].to_json()
    assert template == from_yaml
    assert template["ready"] is True
    assert {c["check"] for c in template["checks"]} >= {"procfs", "security", "sidecar"}


def test_stdin_is_read_with_dash(renders: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "selfcheck", "lint", "-f", "-", "--json"],
        input=renders["post-renderer"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["templates"][0]["name"] == "dd-datadog"


_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)
_NO_AGENT_POD = """
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers: [{name: nginx, image: nginx:1.27}]
"""
MALFORMED = {
    "not_yaml": ("{{ .Values.image }}: [\n", "not valid YAML at line"),
    "not_utf8": ("\udcff", "not UTF-8"),
    "plain_text": ("hello, this is not a manifest\n", "no DaemonSet or Pod in the input"),
    "empty": ("", "no Kubernetes object at all"),
    "no_daemonset": ("kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n", "found: ConfigMap"),
    "pod_without_agent": (_NO_AGENT_POD, "no Datadog Agent pod template among 1"),
    "operator_resource": (
        "kind: DatadogAgent\nmetadata: {name: d}\n",
        "only datadoghq.com/v2alpha1",
    ),
    "alias_bomb": (_BOMB, "alias bomb"),
    "deep_nesting": ("[" * 5000 + "]" * 5000, "nesting deeper than"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_is_one_line_and_exit_3(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = MALFORMED[case]
    path = tmp_path / "input.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    assert main(["lint", "-f", str(path)]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("selfcheck: lint: "), err
    assert expected in err, err


def test_oversized_input_is_refused_on_stdin() -> None:
    big = "# padding\n" * (50 * 1024 * 1024 // 10)
    result = subprocess.run(
        [sys.executable, "-m", "selfcheck", "lint", "-f", "-"],
        input=big,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 3
    assert result.stderr == (
        f"selfcheck: lint: standard input is larger than {MAX_BYTES // 2**20} MiB, the lint limit\n"
    )


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "-f", str(tmp_path / "absent.yaml")]) == 3
    assert capsys.readouterr().err.endswith("No such file or directory\n")


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), (" True\n", None), ("1", True), ("F", False), ("FALSE", False),
     ("yes", None), ("on", None), ("tRUE", None), ("", None)],
)  # fmt: skip
def test_agent_bool_is_go_parsebool_untrimmed(raw: str, value: bool | None) -> None:
    assert agent_bool(raw) is value


def test_a_pod_and_several_templates_are_each_judged(renders: dict[str, str]) -> None:
    """``kubectl get pod -o yaml`` of one Agent pod beside a whole release: one report each,
    and the Cluster Agent's Deployment is not mistaken for an Agent pod."""
    spec = pod_spec(one(load_all(renders["kustomize"]), "DaemonSet"))
    pod: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "datadog-x1"}, "spec": spec}
    broken = copy.deepcopy(pod)
    broken["metadata"]["name"] = "datadog-x2"
    broken["spec"]["hostPID"] = False
    text = renders["post-renderer"] + "\n---\n" + yaml.safe_dump_all([pod, broken])
    reports = lint_text(text)
    assert [r.template.title for r in reports] == [
        "DaemonSet datadog/dd-datadog",
        "Pod datadog-x1",
        "Pod datadog-x2",
    ]
    assert [r.result("origin_detection").status for r in reports] == [
        Status.OK,
        Status.OK,
        Status.FAILED,
    ]
    assert exit_code(reports) == 2


def test_a_read_only_cgroups_mount_without_recursive_read_only_is_a_note(
    renders: dict[str, str],
) -> None:
    """A manifest cannot know the node's cgroup version: the missing field is a note on the
    security verdict naming the fix, never a finding; with the field there is none."""
    stripped = renders["kustomize"].replace("recursiveReadOnly: IfPossible", "")
    for text, expected in ((stripped, True), (renders["kustomize"], False)):
        (report,) = lint_text(text)
        security = report.result("security")
        assert security.status is Status.OK
        notes = [n for n in security.outcome.details.get("notes", []) if "recursiveReadOnly" in n]
        assert bool(notes) is expected, notes
        if expected:
            assert "agent" in {n.split(":")[0] for n in notes}
            assert all("set recursiveReadOnly: IfPossible" in n for n in notes)


# --- DogStatsD over UDS off: the chart's useSocketVolume: false, the Operator's UDS off --------

CHART_DSD_VOLUME = """      - hostPath:
          path: /var/run/datadog
          type: DirectoryOrCreate
        name: dsdsocket
"""
CHART_DSD_ENV = """          - name: DD_DOGSTATSD_SOCKET
            value: "/var/run/datadog/dsd.socket"
"""


def socket_volume_off(chart: str) -> str:
    """The chart 3.240.0 rendered with ``datadog.dogstatsd.useSocketVolume: false``, changed by
    hand from the default render as the templates change it: "should-mount-hostPath-for-dsd-
    socket" is false, so the dsdsocket volume is ``emptyDir: {}``
    (charts/datadog/templates/_daemonset-volumes-linux.yaml); the agent's and trace-agent's
    dsdsocket mounts and their DD_DOGSTATSD_SOCKET stay, rendered on Linux whatever the value
    (_container-agent.yaml, _containers-common-env.yaml "containers-dogstatsd-env",
    _container-trace-agent.yaml; since helm-charts PR #300, chart 2.18.0)."""
    assert chart.count(CHART_DSD_VOLUME) == 1
    return chart.replace(CHART_DSD_VOLUME, "      - emptyDir: {}\n        name: dsdsocket\n")


def test_the_chart_with_its_socket_volume_off_judges_udp(renders: dict[str, str]) -> None:
    """The socket is the Agent's own (JMX-Fetch, the trace-agent): not failed, not a gate;
    applications send over UDP 8125, which the Agent takes from other pods."""
    (report,) = lint_text(socket_volume_off(renders["transcription"]))
    dsd, udp = report.result("dogstatsd_socket"), report.result("dogstatsd_udp")
    assert (dsd.status, dsd.reason) == (Status.SKIPPED, Reason.NOT_ENABLED), dsd.to_json()
    assert not dsd.blocks_readiness
    assert "only the Agent's own containers reach it" in dsd.outcome.message
    assert (udp.status, udp.reason, udp.required) == (Status.OK, Reason.OK, True), udp.to_json()
    assert "UDP 8125 on every address" in udp.outcome.message
    assert report.to_json()["ready"] is True


def test_an_install_that_names_no_socket_does_not_require_it(renders: dict[str, str]) -> None:
    """The Operator with features.dogstatsd.unixDomainSocketConfig.enabled: false renders no
    DD_DOGSTATSD_SOCKET and an emptyDir dsdsocket
    (internal/controller/datadogagent/feature/dogstatsd/feature.go): the socket check is not
    required at all, the UDP one is."""
    chart = socket_volume_off(renders["transcription"])
    assert chart.count(CHART_DSD_ENV) == 2  # the agent's and the trace-agent's
    (report,) = lint_text(chart.replace(CHART_DSD_ENV, ""))
    dsd, udp = report.result("dogstatsd_socket"), report.result("dogstatsd_udp")
    assert (dsd.status, dsd.reason, dsd.required) == (Status.SKIPPED, Reason.NOT_ENABLED, False)
    assert dsd.outcome.message == (
        "agent: DD_DOGSTATSD_SOCKET is not set: applications send over UDP port 8125 "
        "(judged by dogstatsd_udp)"
    )
    assert (udp.status, udp.required) == (Status.OK, True)
    origin = report.result("origin_detection")
    assert origin.required  # DD_DOGSTATSD_ORIGIN_DETECTION(_CLIENT): the client mechanisms
