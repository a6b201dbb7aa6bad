"""The package's import graph has no cycles, and the lower floors never import the higher ones.

Imports are read from the source (every ``import`` statement, inside functions too, so that a
function-level import cannot hide a cycle; ``if TYPE_CHECKING:`` blocks are skipped). Importing
``res2net.a.b`` runs ``res2net.a``'s ``__init__`` first, so it counts as importing both; the root
package ``res2net`` is the public facade and counts only when imported by name (a module of the
package importing it is reaching up to the top floor).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "res2net"
# Floors, lowest first: a module may import its own floor and those below, never above.
FLOORS = [
    {"version", "errors", "home", "lazy", "provenance", "plots", "progress", "models", "config", "data",
     "distributed", "metrics", "evaluate"},
    {"checkpoint", "cpu_training"},
    {"factory", "convert"},
    {"train", "inference", "validation"},
    {"speed", "serve", "detection", "segmentation", "cli"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in modules:  # "from x import function": the module is x
            target = target.rpartition(".")[0]
        if not target:
            return
        found.add(target)
        parent = target.rpartition(".")[0]
        # A package's __init__ runs before its modules, except for the importer's own packages
        # (already running when it imports a sibling).
        while parent and parent != ROOT and not f"{name}.".startswith(f"{parent}."):
            found.add(parent)
            parent = parent.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                stem = f"{base}.{node.module}" if node.module else base
            else:
                stem = node.module or ""
            for alias in node.names:
                add(f"{stem}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return {m for m in found if m.startswith(ROOT)}


def import_graph() -> dict[str, set[str]]:
    paths = sorted((SRC / ROOT).rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


GRAPH = import_graph()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                strong(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strong(node)
    return found


def test_the_graph_sees_imports() -> None:
    assert "res2net.checkpoint.formats" in GRAPH["res2net.factory"] | GRAPH["res2net.checkpoint"]
    assert "res2net.models" in GRAPH["res2net.checkpoint.training"]


def test_no_import_cycles() -> None:
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def floor_of(module: str) -> int | None:
    if module == ROOT:
        return len(FLOORS)  # the facade sits on top
    top = module.split(".")[1]
    return next((i for i, floor in enumerate(FLOORS) if top in floor), None)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_lower_floors_never_import_higher_ones(module: str) -> None:
    own = floor_of(module)
    assert own is not None, f"{module} is on no floor: add its package to FLOORS"
    above = sorted(m for m in GRAPH[module] if (floor_of(m) or 0) > own)
    assert not above, f"{module} (floor {own}) imports {above} from higher floors"


def test_the_old_evaluate_module_still_imports_and_warns() -> None:
    import importlib
    import sys

    import res2net.metrics

    sys.modules.pop("res2net.evaluate", None)
    with pytest.warns(DeprecationWarning, match="res2net.metrics"):
        old = importlib.import_module("res2net.evaluate")
    assert old.evaluate is res2net.metrics.evaluate and old.EvalResult is res2net.metrics.EvalResult
