"""What the CLI commands share: the error exit, the options several take, the rollout spec they build.

Each option is declared once, and a command takes a whole block of them with `@takes_options` (here
the rollout options of `canaryflow workflow`; `canaryflow gitops` declares its own blocks the same way).
tests/cli/test_shared_options.py fails if an option is written out again in a command.

No `from __future__ import annotations` here on purpose: the options' annotations are real objects,
so a command in another module gets them without resolving names in its own globals.
"""

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from canaryflow.kernel.types import RolloutSpec

ListenHost = Annotated[str | None, typer.Option(help="address to listen on")]
ListenPort = Annotated[int | None, typer.Option(help="port to listen on")]
"""A server's `--host` and `--port` (`canaryflow serve`, `canaryflow controller serve`)."""


def exit_with_error(command: str, message: str, code: int = 2) -> NoReturn:
    """One line on stderr, `canaryflow <command>: <message>`, and the exit code (2: bad usage)."""
    typer.echo(f"canaryflow {command}: {message}", err=True)
    raise typer.Exit(code=code)


def rollout_spec(
    fail: Callable[[str], NoReturn], reason: Callable[[ValidationError], str], **fields: Any
) -> RolloutSpec:
    """The `RolloutSpec` of a command's options; a refused field ends the command through `fail`, with
    the command's own wording of the error (`reason`)."""
    try:
        return RolloutSpec(**fields)
    except ValidationError as exc:
        fail(reason(exc))


@dataclass(frozen=True)
class RolloutArgs:
    """The rollout named on a `canaryflow workflow` command line (all four or none of the first four)."""

    model: str | None
    baseline: str | None
    canary: str | None
    rollout_id: str | None
    policy: str
    environment: str

    def named(self) -> dict[str, str | None]:
        """The options that name a rollout, by flag."""
        return {
            "--model": self.model,
            "--baseline-version": self.baseline,
            "--canary-version": self.canary,
            "--rollout-id": self.rollout_id,
        }


def rollout_options(
    model: Annotated[str | None, typer.Option("--model", help="registered model name")] = None,
    baseline: Annotated[
        str | None, typer.Option("--baseline-version", help="registry version serving today")
    ] = None,
    canary: Annotated[
        str | None, typer.Option("--canary-version", help="registry version to roll out")
    ] = None,
    rollout_id: Annotated[
        str | None, typer.Option("--rollout-id", help="rollout id (a Kubernetes name)")
    ] = None,
    policy: Annotated[
        str, typer.Option("--policy", help="shipped policy name or a policy YAML file")
    ] = "default",
    environment: Annotated[str, typer.Option("--environment", help="target environment")] = "production",
) -> RolloutArgs:
    return RolloutArgs(model, baseline, canary, rollout_id, policy, environment)


def takes_options(
    name: str, declare: Callable[..., Any]
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A block of options declared once: the command's parameter `name` becomes the options `declare`
    declares (names, types, defaults, help), in its place on the command line, and the command receives
    what `declare` returns from them."""
    block = list(inspect.signature(declare, eval_str=True).parameters.values())

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True)
        spliced = [q for p in own.parameters.values() for q in (block if p.name == name else [p])]

        @functools.wraps(command)
        def run(**options: Any) -> None:
            options[name] = declare(**{p.name: options.pop(p.name) for p in block})
            command(**options)

        run.__signature__ = own.replace(parameters=spliced)  # type: ignore[attr-defined]
        return run

    return decorate


takes_rollout_options = takes_options("rollout", rollout_options)
"""`command(rollout: RolloutArgs, ...)`: the six rollout options of `canaryflow workflow`."""
