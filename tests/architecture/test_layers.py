"""The layers import one way (docs/architecture.md): kernel <- adapters <- application.

Reads every module's imports with `ast` (function-level and TYPE_CHECKING imports included: a hidden
import is still a dependency) and fails on an upward import, an import between two adapters, an
import between the application packages that must not know each other, or a cycle between packages.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("canaryflow", "controller", "workflows", "gitops", "inference", "policies")

KERNEL = ("canaryflow.kernel", "policies")
ADAPTERS = ("canaryflow.adapters", "gitops", "inference")
APPLICATION = ("canaryflow.app", "controller", "workflows")
# Application packages that must not import each other: the composition root wires them.
APP_FORBIDDEN = {
    "controller": ("workflows", "canaryflow.app"),
    "workflows": ("controller", "canaryflow.app"),
}


def _within(module: str, prefixes: tuple[str, ...]) -> str | None:
    for prefix in prefixes:
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for top in OURS:
        for path in (ROOT / top).rglob("*.py"):
            module = _module_name(path)
            found: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module)
                    found.update(f"{node.module}.{a.name}" for a in node.names)
            graph[module] = {m for m in found if m.split(".")[0] in OURS}
    return graph


def _resolve(target: str, modules: set[str]) -> str:
    """`from pkg import name` names either a module or an attribute: keep the longest known module."""
    while target not in modules and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def _adapter_package(module: str) -> str:
    prefix = _within(module, ADAPTERS)
    assert prefix is not None
    if prefix == "canaryflow.adapters":
        return ".".join(module.split(".")[:3])
    return prefix


def _violations() -> list[str]:
    graph = _imports()
    modules = set(graph)
    bad: list[str] = []
    for module, targets in graph.items():
        for raw in targets:
            target = _resolve(raw, modules)
            if _within(module, KERNEL):
                if not _within(target, KERNEL):
                    bad.append(f"kernel {module} imports {target}")
            elif _within(module, ADAPTERS):
                if _within(target, APPLICATION):
                    bad.append(f"adapter {module} imports the application's {target}")
                elif _within(target, ADAPTERS) and _adapter_package(target) != _adapter_package(module):
                    bad.append(f"adapter {module} imports another adapter, {target}")
            elif (app := _within(module, APPLICATION)) in APP_FORBIDDEN:
                for other in APP_FORBIDDEN[app]:
                    if _within(target, (other,)):
                        bad.append(f"{module} imports {target} ({app}, {other} meet in canaryflow.app)")
            elif app is None and module != "canaryflow":
                bad.append(f"{module} belongs to no layer")
    return bad


def _package_cycles() -> list[list[str]]:
    graph = _imports()
    modules = set(graph)
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        source = module.rsplit(".", 1)[0] if module not in _packages(modules) else module
        for raw in targets:
            target = _resolve(raw, modules)
            dest = target.rsplit(".", 1)[0] if target not in _packages(modules) else target
            if dest != source and not source.startswith(dest + ".") and not dest.startswith(source + "."):
                edges[source].add(dest)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return cycles


def _packages(modules: set[str]) -> set[str]:
    return {m for m in modules if (ROOT / m.replace(".", "/") / "__init__.py").exists()}


def test_layers_import_one_way() -> None:
    assert _violations() == []


def test_no_import_cycle_between_packages() -> None:
    assert _package_cycles() == []


def test_the_checker_sees_an_upward_import(tmp_path: Path, monkeypatch) -> None:
    """The walk is not vacuous: a kernel module importing the application is reported."""
    graph = _imports()
    graph["canaryflow.kernel.types"] = {*graph["canaryflow.kernel.types"], "controller.service"}
    monkeypatch.setattr(__import__(__name__, fromlist=["_imports"]), "_imports", lambda: graph)
    assert "kernel canaryflow.kernel.types imports controller.service" in _violations()


def test_the_checker_sees_a_cycle(monkeypatch) -> None:
    graph = _imports()
    graph["canaryflow.kernel.contracts.buckets"] = {"canaryflow.kernel.analysis.judge"}
    monkeypatch.setattr(__import__(__name__, fromlist=["_imports"]), "_imports", lambda: graph)
    cycles = _package_cycles()
    assert any({"canaryflow.kernel.contracts", "canaryflow.kernel.analysis"} <= set(c) for c in cycles)
