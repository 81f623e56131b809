"""Lint fed arbitrary manifests: any value in any field gives verdicts or one ``InputError``.

A rendered manifest is untyped: Helm templates leave ``null`` (``tolerations:``), strings where
numbers belong, lists where maps do. Each property replaces fields of the project's own
DaemonSet (pod level, every container, every mount and env entry) with arbitrary JSON values
and lints it; derandomized with a fixed number of examples, so CI is stable.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
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
