"""`canaryflow workflow step`'s arguments: declared once, parsed by one click parser.

The CLI command (canaryflow.app.commands.workflow) takes its signature from `step_options`, and the
local runner parses a rendered container's args with `parse_step_argv`, built from the same
signature; so an argument the container would refuse is refused locally too, and both turn the
parsed options into a `StepInput` with `step_input`.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import typer
from typer.exceptions import TyperException

from workflows.steps.base import StepInput


@dataclass(frozen=True)
class StepCall:
    name: str
    input_json: str
    upstream: list[str] = field(default_factory=list)
    reason: str = ""
    failures: str = ""
    outputs_dir: Path = Path("/tmp/outputs")
    poll_interval: float | None = None


def step_options(
    name: str = typer.Argument(..., help="step function: render, set-weight, wait-ready, analyze, ..."),
    input_json: str = typer.Option(..., "--input", help='JSON: {"spec": {...}, "params": {...}}'),
    upstream: list[str] = typer.Option([], "--upstream", help="KEY=VALUE output of an earlier node"),
    reason: str = typer.Option("", "--reason", help="why the exit handler runs"),
    failures: str = typer.Option("", "--failures", help="exit handler: Argo's workflow.failures (JSON)"),
    outputs_dir: Path = typer.Option(Path("/tmp/outputs"), "--outputs-dir", help="one file per output"),
    poll_interval: float | None = typer.Option(None, "--poll-interval", min=0.01, help="poll until done"),
) -> StepCall:
    """Run one step of the rollout (the container entry point). Exit 1: step failed; 3: error."""
    return StepCall(name, input_json, list(upstream), reason, failures, outputs_dir, poll_interval)


@cache
def _command() -> Any:
    single = typer.Typer()
    single.command()(step_options)
    return typer.main.get_command(single)


class StepArgsError(ValueError):
    """The args are not what `canaryflow workflow step` takes; the message names the option."""


def parse_step_argv(argv: list[str]) -> StepCall:
    """The args after `workflow step`, parsed as the CLI parses them (StepArgsError if it refuses them).
    The local runner parses a polled node's same args on every tick: the answers are remembered
    (a parse costs ~10 ms of the CLI's machinery; a StepCall is frozen)."""
    return _parse(tuple(argv))


@functools.lru_cache(maxsize=4096)
def _parse(argv: tuple[str, ...]) -> StepCall:
    try:
        context = _command().make_context("step", list(argv))
    except TyperException as exc:  # click's UsageError / BadParameter, as the CLI would report them
        raise StepArgsError(str(exc)) from None
    return StepCall(**context.params)


def describe_failures(text: str) -> str:
    """`analyze-10 Failed: fail at 10%; ...` from Argo's `workflow.failures` (a JSON list; newer Argo
    versions quote it once more as a JSON string). Unreadable text is kept as it is, never an error."""
    value: Any = text.strip()
    try:
        for _ in range(2):  # raw JSON, or JSON quoted as a string
            if isinstance(value, str) and value[:1] in ('"', "[", "n"):
                value = json.loads(value)
    except ValueError:
        return text.strip()
    if not isinstance(value, list):
        return "" if value is None else str(value)
    parts = [
        f"{f.get('displayName', '?')} {f.get('phase', '')}: {f.get('message', '')}".strip().rstrip(":")
        for f in value
        if isinstance(f, dict)
    ]
    return "; ".join(parts)


def step_input(call: StepCall, started_at: float | None = None, **extra: Any) -> StepInput:
    """The StepInput of a parsed call: `--input` JSON, `--upstream KEY=VALUE` merged over its upstream."""
    try:
        payload = json.loads(call.input_json)
        upstream = dict(item.split("=", 1) for item in call.upstream)
    except (json.JSONDecodeError, ValueError) as exc:
        raise StepArgsError(f"--input / --upstream: not JSON / KEY=VALUE ({exc})") from None
    if not isinstance(payload, dict):
        raise StepArgsError("--input: not a JSON object")
    return StepInput.model_validate(
        {
            **payload,
            "upstream": {**payload.get("upstream", {}), **upstream},
            "reason": ": ".join(p for p in (call.reason, describe_failures(call.failures)) if p),
            "started_at": time.time() if started_at is None else started_at,
            **extra,
        }
    )
