"""The package's layering: no import circles between reenact's modules and packages.

Imports are read from the source (not executed), including the ones inside functions, which hide a circle at
import time but still tie two modules to each other. Imports under ``if TYPE_CHECKING:`` are left out: they are
type hints, never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module, modules: set[str]) -> set[str]:
    """Modules of ``modules`` that ``tree`` imports outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for name in [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]:
                if name in modules:
                    found.add(name)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(path): path for path in SOURCE.rglob("*.py")}
    modules = set(files)
    return {name: _imports(ast.parse(path.read_text()), modules) - {name} for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through every strongly connected component of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def _collapse(graph: dict[str, set[str]], depth: int) -> dict[str, set[str]]:
    """The graph between packages: module names cut to their first ``depth`` parts (``reenact.models``)."""
    collapsed: dict[str, set[str]] = {}
    for source, targets in graph.items():
        head = ".".join(source.split(".")[:depth])
        collapsed.setdefault(head, set()).update(
            ".".join(target.split(".")[:depth]) for target in targets)
        collapsed[head].discard(head)
    return collapsed


def test_the_cycle_finder_finds_a_planted_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_between_modules_or_packages() -> None:
    graph = _graph()
    assert len(graph) > 100  # the whole package was read
    assert _cycles(graph) == []
    assert _cycles(_collapse(graph, 2)) == []  # reenact.models, reenact.data, reenact.cli, ...
    assert _cycles(_collapse(graph, 3)) == []  # reenact.models.fsrt, reenact.models.lpmm, ...
