"""The CLI commands declare each option once and build a rollout spec in one place
(canaryflow/app/commands/cli_shared.py): an option block or a spec-building block written out again in
a command fails here, before the two copies can drift apart."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from typer import Context
from typer.main import get_command

import canaryflow.app.commands as commands
from canaryflow.app.cli import app
from canaryflow.app.commands.cli_shared import rollout_options

COMMANDS = Path(commands.__file__).parent
ROLLOUT_COMMANDS = ("render", "submit", "lint", "run")


def _calls(name: str) -> list[tuple[str, ast.Call]]:
    """Every call of `typer.<name>(...)` or `<name>(...)` in the command modules, with its module."""
    found = []
    for path in sorted(COMMANDS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == name:
                    found.append((path.name, node))
    return found


def _declaration(call: ast.Call) -> tuple[tuple[str, ...], str]:
    flags = tuple(str(a.value) for a in call.args if isinstance(a, ast.Constant) and str(a.value)[:1] == "-")
    help_text = next((ast.unparse(k.value) for k in call.keywords if k.arg == "help"), "")
    return flags, help_text


def test_each_option_is_declared_once():
    declared = Counter(
        _declaration(call) for kind in ("Option", "Argument") for _, call in _calls(kind) if call.keywords
    )
    repeated = sorted(f"{flags} {help_text}" for (flags, help_text), n in declared.items() if n > 1)
    assert not repeated, f"options declared more than once (share them in cli_shared.py): {repeated}"


def test_the_rollout_commands_take_the_one_rollout_option_block():
    group = get_command(app)
    workflow = group.get_command(Context(group), "workflow")  # built when asked for (cli.py)
    names = list(rollout_options.__annotations__)[:-1]  # the return annotation last
    for command in ROLLOUT_COMMANDS:
        params = [p.name for p in workflow.commands[command].params]
        assert params[: len(names)] == names, command


def test_rollout_specs_are_built_in_one_place():
    builders = sorted({module for module, _ in _calls("RolloutSpec")})
    assert builders == ["cli_shared.py"], builders


def test_the_checks_see_a_repeated_block(tmp_path, monkeypatch):
    """Not vacuous: an option written out again in a second module is reported."""
    for path in COMMANDS.glob("*.py"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "again.py").write_text(
        'import typer\nmodel = typer.Option(None, "--model", help="registered model name")\n'
        "spec = RolloutSpec()\n"
    )
    monkeypatch.setattr(f"{__name__}.COMMANDS", tmp_path)
    try:
        test_each_option_is_declared_once()
    except AssertionError as exc:
        assert "--model" in str(exc)
    else:
        raise AssertionError("a repeated --model option was not reported")
    assert "again.py" in {module for module, _ in _calls("RolloutSpec")}
