"""Every import of one of the project's modules names a module that exists.

mypy runs with `ignore_missing_imports` (most third-party packages ship no types), so an import of a
module that was renamed or moved is no type error: it fails only when that line runs, which for an
import inside a function may be never in the tests. This reads every import statement (function-level
and TYPE_CHECKING ones too) of the product, the tests and the benchmarks, and checks that each
project module it names is there (`from pkg import name` may name a module or an attribute).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("canaryflow", "controller", "workflows", "gitops", "inference", "policies", "tests", "bench")


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _defines(module: str, name: str) -> bool:
    """`name` is a submodule of `module`, or bound at its top level (an assignment, def, class or import)."""
    if _exists(f"{module}.{name}"):
        return True
    path = ROOT.joinpath(*module.split("."))
    source = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
    tree = ast.parse(source.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (alias.asname or alias.name.split(".")[0]) == name for alias in node.names
        ):
            return True
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(target)):
                return True
    return False


def _problems(path: Path) -> list[str]:
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[tuple[str, str | None]]
        if isinstance(node, ast.Import):
            names = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in names:
            if module.split(".")[0] not in OURS:
                continue
            where = f"{shown}:{node.lineno}"
            if not _exists(module):
                found.append(f"{where}: no module {module}")
            elif name is not None and name != "*" and not _defines(module, name):
                found.append(f"{where}: {module} has no {name}")
    return found


def test_every_import_of_a_project_module_resolves() -> None:
    problems = [p for package in OURS for path in (ROOT / package).rglob("*.py") for p in _problems(path)]
    assert problems == []


def test_a_renamed_module_or_a_missing_name_is_caught(tmp_path: Path) -> None:
    stale = tmp_path / "stale.py"
    stale.write_text(
        "def f():\n    from canaryflow.kernel.analysis.engine import judge\n"
        "from canaryflow.kernel.contracts.phases import NO_SUCH_PHASE\n"
    )
    assert sorted(_problems(stale)) == [
        "stale.py:2: no module canaryflow.kernel.analysis.engine",
        "stale.py:3: canaryflow.kernel.contracts.phases has no NO_SUCH_PHASE",
    ]
    assert importlib.util.find_spec("canaryflow.kernel.analysis.judge") is not None
