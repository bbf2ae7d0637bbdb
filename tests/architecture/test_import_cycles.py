"""No import cycle between the project's modules (package cycles are test_layers.py's).

A cycle held apart by a function-level import still makes two modules one unit that neither can be
read, tested or moved without the other, so imports inside functions are edges here too; only
imports under `if TYPE_CHECKING:` are left out (annotations, never run). An edge goes to the module
named (`from pkg import name` to `pkg.name` when that is a module, else to `pkg`); the package
`__init__` files Python runs on the way are not edges, or every package would be a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("canaryflow", "controller", "workflows", "gitops", "inference", "policies")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name imported when the code runs: TYPE_CHECKING blocks skipped, nothing else."""
    found: set[str] = set()
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package of this module
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.update(f"{base}.{a.name}" for a in node.names)  # a module, or a name of `base`
        todo.extend(ast.iter_child_nodes(node))
    return {m for m in found if m.split(".")[0] in OURS}


def import_graph() -> dict[str, set[str]]:
    sources: dict[str, tuple[ast.AST, bool]] = {}
    for top in OURS:
        for path in (ROOT / top).rglob("*.py"):
            sources[_module_name(path)] = (ast.parse(path.read_text(), str(path)), path.name == "__init__.py")
    graph: dict[str, set[str]] = {}
    for module, (tree, is_package) in sources.items():
        edges = set()
        for raw in _runtime_imports(tree, module, is_package):
            target = raw
            while target not in sources and "." in target:  # `from pkg import name`: name is no module
                target = target.rsplit(".", 1)[0]
            if target in sources and target != module:
                edges.add(target)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules() -> None:
    assert cycles(import_graph()) == []


def test_a_function_level_import_back_is_a_cycle() -> None:
    """The walk sees imports inside functions: the shape of the old prediction_log <-> summary cycle."""
    source = "def sinks():\n    from inference.prediction_log import open_prediction_log\n"
    edges = _runtime_imports(ast.parse(source), "inference.prediction_summary", False)
    graph = import_graph()
    assert edges == {"inference.prediction_log.open_prediction_log"}
    graph["inference.prediction_summary"].add("inference.prediction_log")
    assert ["inference.prediction_log", "inference.prediction_summary"] in cycles(graph)


def test_type_checking_imports_are_not_edges() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from inference.prediction_log import PredictionLog\n"
        "else:\n    from inference.metrics import ServerMetrics\n"
    )
    assert _runtime_imports(ast.parse(source), "inference.x", False) == {"inference.metrics.ServerMetrics"}


def test_relative_imports_resolve_to_the_package() -> None:
    source = "from . import metrics\nfrom .models import base\n"
    assert _runtime_imports(ast.parse(source), "inference.server", False) == {
        "inference.metrics",
        "inference.models.base",
    }
