"""No import circle in ``selfcheck/``: every import runs from a higher layer to a lower one.

The graph is read from the source with ``ast``, not by importing, so it sees every import
statement: at module level and inside functions alike. A function-level import only defers
the circle (Python tolerates it because the second module is complete by the time the
function runs); the two layers still lean on each other, which is what this test forbids.
Imports under ``if TYPE_CHECKING:`` count too: they are layering the type checker reads.
The implicit import of a parent package (``selfcheck.host`` before ``selfcheck.host.agent``)
is not an edge: no module writes it.

Run alone to see every cycle named: ``python -m pytest tests/test_imports.py``.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

from tests.support.run import REPO

PACKAGE = "selfcheck"


def module_names(root: Path = REPO / PACKAGE) -> dict[str, Path]:
    """``selfcheck.host.agent`` -> its file, for every module and package of ``selfcheck/``."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The dotted names one import statement asks for (``from A import B`` gives ``A.B``,
    which is a module or a name inside ``A``)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            here = module.split(".") if is_package else module.split(".")[:-1]
            anchor = here[: len(here) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        yield base
        yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(names: dict[str, Path]) -> dict[str, set[str]]:
    """Each module -> the modules of ``selfcheck`` it imports, anywhere in its source."""
    graph: dict[str, set[str]] = {}
    for module, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(tree):
            for name in _imported(node, module, is_package):
                if name in names:
                    targets.add(name)
        targets.discard(module)
        graph[module] = _without_implied_parents(targets)
    return graph


def _without_implied_parents(targets: set[str]) -> set[str]:
    """``from selfcheck.host import agent`` is an edge to ``selfcheck.host.agent`` only: the
    ``selfcheck.host`` it names on the way is the implicit parent import."""
    return {t for t in targets if not any(o.startswith(f"{t}.") for o in targets)}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle, each as ``[a, b, ..., a]`` where each module imports the next.

    ``graphlib`` names one circle at a time; one of its edges is set aside and it is asked
    again, until the graph sorts. Two circles through the same edge are named once: the
    second shows when the first is gone.
    """
    edges = {module: set(targets) for module, targets in graph.items()}
    found: list[list[str]] = []
    while True:
        try:
            graphlib.TopologicalSorter(edges).prepare()
        except graphlib.CycleError as error:
            circle = list(reversed(error.args[1]))
            found.append(circle)
            edges[circle[0]].discard(circle[1])
            continue
        return found


def test_the_graph_sees_module_and_function_level_imports() -> None:
    graph = import_graph(module_names())
    assert "selfcheck.exitcodes" in graph["selfcheck.cli"]  # module level
    assert "selfcheck.runner" in graph["selfcheck.cli"]  # inside cmd_check
    assert "selfcheck.host.agent" in graph["selfcheck.host.eyes"]  # from selfcheck.host import
    assert graph["selfcheck.exitcodes"] == set()


def test_a_circle_is_named_module_by_module() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e.f"}, "e.f": set()}
    assert [" -> ".join(c) for c in cycles(graph)] in (
        ["a -> b -> c -> a"],
        ["b -> c -> a -> b"],
        ["c -> a -> b -> c"],
    )
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_package() -> None:
    found = cycles(import_graph(module_names()))
    assert not found, "import circles (each module imports the next):\n" + "\n".join(
        " -> ".join(circle) for circle in found
    )
