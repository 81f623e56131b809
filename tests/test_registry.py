"""The registry loads the check modules ``ORDER`` names: every module of the package is there,
and one that fails to import is a check in error, not a CLI that cannot start."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap

import selfcheck.checks
from selfcheck.registry import ORDER, all_checks
from tests.support.run import REPO


def test_every_check_module_is_named_in_order_and_loaded() -> None:
    modules = {m.name for m in pkgutil.iter_modules(selfcheck.checks.__path__)}
    assert {name for name in modules if not name.startswith("_")} == set(ORDER)
    assert tuple(all_checks()) == ORDER


def test_a_check_module_that_fails_to_import_is_a_check_in_error() -> None:
    """In a fresh interpreter whose import system fails ``pod_logs`` on purpose."""
    child = textwrap.dedent(
        """
        import importlib.abc, importlib.machinery, sys
        class Broken(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            def find_spec(self, name, path, target=None):
                if name == "selfcheck.checks.pod_logs":
                    return importlib.machinery.ModuleSpec(name, self)
                return None
            def create_module(self, spec):
                return None
            def exec_module(self, module):
                raise ImportError("planted by the test")
        sys.meta_path.insert(0, Broken())
        from selfcheck.registry import all_checks
        checks = all_checks()
        print(",".join(checks))
        outcome = checks["pod_logs"].run(None)
        print(outcome.status.value, outcome.reason.value)
        print(outcome.message)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == ",".join(ORDER)  # the broken one keeps its place
    assert out[1] == "error exception"
    assert out[2] == "the pod_logs check could not be loaded: ImportError: planted by the test"
