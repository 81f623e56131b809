"""Lint fed arbitrary manifests: any value in any field gives verdicts or one ``InputError``.

A rendered manifest is untyped: Helm templates leave ``null`` (``tolerations:``), strings where
numbers belong, lists where maps do. Each property replaces fields of the project's own
DaemonSet (pod level, every container, every mount and env entry) with arbitrary JSON values
and lints it; derandomized with a fixed number of examples, so CI is stable.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from selfcheck.lint import InputError, lint_pod
from selfcheck.lint.loader import parse_documents
from selfcheck.lint.pod import agent_templates
from selfcheck.model import Reason
from tests.deploy.podspec import Obj

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
POD_KEYS = ("hostPID", "securityContext", "volumes", "containers", "hostNetwork")
CONTAINER_KEYS = ("name", "image", "env", "envFrom", "volumeMounts", "securityContext",
                  "readinessProbe", "livenessProbe", "ports")  # fmt: skip
FUZZ = settings(max_examples=150, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


def _lint(spec: Obj) -> None:
    doc = {"kind": "DaemonSet", "metadata": {"name": "x"}, "spec": {"template": {"spec": spec}}}
    try:
        templates = agent_templates([doc])
    except InputError:
        return
    for template in templates:
        report = lint_pod(template)
        assert all(isinstance(r.outcome.reason, Reason) for r in report.results)
        report.to_json()


@FUZZ
@given(key=st.sampled_from(POD_KEYS), value=JSON)
def test_any_pod_field(sidecar_spec: Obj, key: str, value: Any) -> None:
    spec = copy.deepcopy(sidecar_spec)
    spec[key] = value
    _lint(spec)


@FUZZ
@given(index=st.integers(0, 2), key=st.sampled_from(CONTAINER_KEYS), value=JSON)
def test_any_container_field(sidecar_spec: Obj, index: int, key: str, value: Any) -> None:
    spec = copy.deepcopy(sidecar_spec)
    spec["containers"][index][key] = value
    _lint(spec)


@FUZZ
@given(item=JSON, field=st.sampled_from(("volumeMounts", "env")))
def test_any_list_entry(sidecar_spec: Obj, item: Any, field: str) -> None:
    spec = copy.deepcopy(sidecar_spec)
    for c in spec["containers"]:
        c[field] = [*(c.get(field) or []), item]
    _lint(spec)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_is_documents_or_input_error(text: str) -> None:
    try:
        parse_documents(text)
    except InputError as error:
        assert "\n" not in str(error)


# Every path of a DatadogAgent the Operator translation reads, each replaced by any JSON value.
OPERATOR_PATHS = (
    ("spec",), ("metadata",), ("spec", "features"), ("spec", "global"), ("spec", "override"),
    ("spec", "override", "nodeAgent"), ("spec", "features", "dogstatsd"),
    ("spec", "features", "dogstatsd", "unixDomainSocketConfig"),
    ("spec", "features", "dogstatsd", "unixDomainSocketConfig", "path"),
    ("spec", "features", "dogstatsd", "originDetectionEnabled"), ("spec", "features", "apm"),
    ("spec", "features", "logCollection"), ("spec", "features", "processDiscovery"),
    ("spec", "global", "criSocketPath"), ("spec", "global", "env"),
    ("spec", "override", "nodeAgent", "env"), ("spec", "override", "nodeAgent", "volumes"),
    ("spec", "override", "nodeAgent", "image"), ("spec", "override", "nodeAgent", "hostPID"),
    ("spec", "override", "nodeAgent", "securityContext"),
    ("spec", "override", "nodeAgent", "containers"),
    ("spec", "override", "nodeAgent", "containers", "agent"),
    ("spec", "override", "nodeAgent", "containers", "agent", "volumeMounts"),
    ("spec", "override", "nodeAgent", "containers", "agent", "env"),
    ("spec", "override", "nodeAgent", "containers", "agent", "securityContext"),
    ("spec", "override", "nodeAgent", "containers", "agent", "healthPort"),
)  # fmt: skip


@settings(max_examples=800, derandomize=True, deadline=None)
@given(path=st.sampled_from(OPERATOR_PATHS), value=JSON)
@example(path=("spec", "override", "nodeAgent", "volumes"), value=5)
@example(path=("spec", "override", "nodeAgent", "containers", "agent", "volumeMounts"), value=5)
def test_any_datadogagent_field(path: tuple[str, ...], value: Any) -> None:
    """A DatadogAgent with any value anywhere: verdicts or one InputError, never a crash."""
    from selfcheck.lint import lint_text

    doc: Obj = {
        "apiVersion": "datadoghq.com/v2alpha1",
        "kind": "DatadogAgent",
        "metadata": {"name": "x"},
        "spec": {"override": {"nodeAgent": {"containers": {"agent": {}}}}},
    }
    where = doc
    for key in path[:-1]:
        if not isinstance(where.get(key), dict):
            where[key] = {}
        where = where[key]
    where[path[-1]] = value
    import json

    try:
        reports = lint_text(json.dumps(doc))
    except InputError:
        return
    for report in reports:
        assert all(isinstance(r.outcome.reason, Reason) for r in report.results)
        report.to_json()
