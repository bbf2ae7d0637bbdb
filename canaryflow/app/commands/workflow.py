"""`canaryflow workflow`: the rollout Workflow as YAML, on an Argo Server, or run on this machine.

`step` is the container entry point of every node of the rendered Workflow: it runs one step
function and writes its outputs to files Argo reads as output parameters.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
import yaml
from pydantic import ValidationError

from canaryflow.app.commands.cli_shared import (
    RolloutArgs,
    exit_with_error,
    rollout_spec,
    takes_rollout_options,
)
from canaryflow.kernel.component_settings import SettingsError
from canaryflow.kernel.errors import first_error
from canaryflow.kernel.types import RolloutSpec, WorkflowStatus
from workflows.steps.command import step_options

if TYPE_CHECKING:
    from policies.model import Policy
    from workflows.argo.argo_client import ArgoEngine

app = typer.Typer(
    help="The rollout Workflow: render as YAML, submit to Argo, run locally.", no_args_is_help=True
)


def _fail(message: str, code: int = 2) -> NoReturn:
    exit_with_error("workflow", " ".join(message.split()), code)


def _first_error(exc: ValidationError) -> str:
    return first_error(exc)


def _settings(**overrides: Any) -> Any:
    from workflows.workflow_settings import WorkflowSettings

    try:
        return WorkflowSettings(**{k: v for k, v in overrides.items() if v is not None})
    except (ValidationError, SettingsError) as exc:
        _fail(_first_error(exc) if isinstance(exc, ValidationError) else str(exc))


def _policy(name: str) -> Any:
    from policies import PolicyError, load_policy

    try:
        return load_policy(name)
    except (PolicyError, OSError) as exc:
        _fail(f"--policy: {exc}")


def _spec(rollout: RolloutArgs) -> RolloutSpec | None:
    """The rollout the options name; None when they name none."""
    given = rollout.named()
    if not any(given.values()):
        return None
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        _fail(f"{', '.join(missing)}: required with the other rollout options")
    return rollout_spec(
        _fail,
        _first_error,
        rollout_id=rollout.rollout_id,
        model=rollout.model,
        baseline_version=rollout.baseline,
        canary_version=rollout.canary,
        policy=rollout.policy,
        environment=rollout.environment,
    )


def _required_spec(rollout: RolloutArgs) -> RolloutSpec:
    spec = _spec(rollout)
    if spec is None:
        _fail("--model, --baseline-version, --canary-version, --rollout-id: required")
    return spec


@app.command("render")
@takes_rollout_options
def render(
    rollout: RolloutArgs,
    install: bool = typer.Option(False, "--install", help="also the service accounts and RBAC it needs"),
    namespace: str | None = typer.Option(
        None, "--namespace", help="Argo namespace (settings: argo_namespace)"
    ),
    image: str | None = typer.Option(None, "--image", help="canaryflow image the steps run"),
) -> None:
    """Print YAML: the WorkflowTemplate of a policy, or with rollout options a Workflow to `argo submit`."""
    from workflows.argo.install import install_manifests, rbac_manifests
    from workflows.argo.render import manifest, rollout_template, rollout_workflow

    policy, environment = rollout.policy, rollout.environment
    settings = _settings(argo_namespace=namespace, image=image)
    rollout_policy = _policy(policy)
    spec = _spec(rollout)
    docs: list[dict[str, Any]] = []
    if spec is not None:
        docs = [
            *(rbac_manifests(settings) if install else []),
            manifest(rollout_workflow(spec, rollout_policy, settings)),
        ]
    elif install:
        docs = install_manifests(rollout_policy, environment, settings, policy)
    else:
        docs = [manifest(rollout_template(rollout_policy, environment, settings, policy))]
    from workflows.argo.scope import check_all

    problems = check_all(docs)
    if problems:  # Argo would refuse it ("failed to resolve"): never print it as if it were usable
        _fail(f"rendered Workflow is out of Argo's variable scope: {problems[0]}", code=1)
    typer.echo(yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True), nl=False)


def _engine(engine: str, db: Path | None) -> Any:
    from canaryflow.app.wiring import build_engine

    if engine not in ("argo", "local"):
        _fail(f"--engine: {engine!r} is not argo or local")
    if engine == "local" and db is None:
        _fail("--db: the local runner needs its database file")
    try:
        return build_engine(_settings(engine=engine), db)
    except (ValueError, SettingsError) as exc:
        _fail(str(exc))


_NAME = typer.Argument(..., help="workflow name")
_ENGINE = typer.Option("argo", "--engine", help="argo (Argo Server from settings) or local")
_DB = typer.Option(None, "--db", help="local runner: SQLite file holding the workflow state")


def _print_status(status: WorkflowStatus) -> None:
    typer.echo(f"{status.name}  {status.phase}  {status.message}".rstrip())
    for node in status.nodes:
        outputs = ", ".join(f"{k}={v[:60]}" for k, v in node.outputs.items() if k != "report")
        typer.echo(f"  {node.id:<18} {node.phase:<10} {outputs}  {node.message[:100]}".rstrip())


def _call(what: str, fn: Any) -> Any:
    from workflows.argo.argo_client import ArgoError

    try:
        return fn()
    except ArgoError as exc:
        _fail(str(exc), code=1)
    except KeyError as exc:
        _fail(f"{what}: no workflow named {exc}")


def _argo_rollout(rollout: RolloutArgs) -> tuple[RolloutSpec, Policy, ArgoEngine]:
    """The rollout named on the command line, its policy, and an engine on the configured Argo Server."""
    from workflows.argo.argo_client import ArgoEngine

    spec = _required_spec(rollout)
    rollout_policy = _policy(rollout.policy)
    return spec, rollout_policy, ArgoEngine(_settings(), policy_for=lambda _name: rollout_policy)


@app.command("submit")
@takes_rollout_options
def submit(
    rollout: RolloutArgs,
    install_template: bool = typer.Option(
        False, "--install-template", help="create the WorkflowTemplate first"
    ),
) -> None:
    """Create the rollout Workflow on the Argo Server (from the installed WorkflowTemplate)."""
    spec, rollout_policy, engine = _argo_rollout(rollout)
    if install_template:
        _call("install", lambda: engine.install(rollout_policy, rollout.environment, rollout.policy))
    name = _call("submit", lambda: engine.submit(spec))
    typer.echo(f"{name}  {engine.link(name)}")


@app.command("lint")
@takes_rollout_options
def lint(rollout: RolloutArgs) -> None:
    """Have the Argo Server check a rollout's Workflow without creating it."""
    from workflows.dag import workflow_name

    spec, _, engine = _argo_rollout(rollout)
    _call("lint", lambda: engine.lint(spec))
    typer.echo(f"{workflow_name(spec)}: valid")


@app.command("status")
def status(name: str = _NAME, engine: str = _ENGINE, db: Path | None = _DB) -> None:
    """Where a rollout workflow stands: its phase, and each node's phase and outputs."""
    runner = _engine(engine, db)
    _print_status(_call("status", lambda: runner.status(name)))


@app.command("resume")
def resume(name: str = _NAME, engine: str = _ENGINE, db: Path | None = _DB) -> None:
    """Let the approval gate pass (what the controller does when the pull request is approved)."""
    runner = _engine(engine, db)
    _call("resume", lambda: runner.resume(name))


@app.command("stop")
def stop(
    name: str = _NAME,
    reason: str = typer.Option(..., "--reason", help="why (recorded with the rollback)"),
    engine: str = _ENGINE,
    db: Path | None = _DB,
) -> None:
    """Stop a rollout; its exit handler rolls the canary back."""
    runner = _engine(engine, db)
    _call("stop", lambda: runner.stop(name, reason))


@app.command("run")
@takes_rollout_options
def run(
    rollout: RolloutArgs,
    db: Path = typer.Option(Path("canaryflow-workflows.db"), "--db", help="SQLite file of the runner state"),
    interval: float = typer.Option(2.0, "--interval", min=0.05, help="seconds between reconciles"),
) -> None:
    """Run a rollout on this machine with the local runner until it ends (resumable: run it again)."""
    spec = _required_spec(rollout)
    _policy(rollout.policy)
    runner = _engine("local", db)
    name = runner.submit(spec)
    seen: dict[str, str] = {}
    while True:
        current = runner.reconcile(name)
        for node in current.nodes:
            if seen.get(node.id) != node.phase and node.phase != "Pending":
                typer.echo(f"{node.id:<18} {node.phase:<10} {node.message[:100]}".rstrip())
                seen[node.id] = node.phase
        if current.phase not in ("Pending", "Running"):
            break
        time.sleep(interval)
    typer.echo(f"{name}: {current.phase} {current.message}".rstrip())
    raise typer.Exit(code=0 if current.phase == "Succeeded" else 1)


def _write_outputs(outputs_dir: Path, outcome: Any) -> None:
    from workflows.argo.render import REPORT_FILE

    outputs_dir.mkdir(parents=True, exist_ok=True)
    for key, value in outcome.outputs.items():
        (outputs_dir / key).write_text(value)
    if outcome.report_markdown is not None:
        (outputs_dir / Path(REPORT_FILE).name).write_text(outcome.report_markdown)


@app.command("step")
@functools.wraps(step_options)  # one signature: the local runner parses container args with it too
def step(**options: Any) -> None:
    from canaryflow.app.wiring import build_step_context
    from workflows.steps import STEPS
    from workflows.steps.base import EXIT_ERROR, EXIT_FAILED
    from workflows.steps.command import StepArgsError, step_input

    call = step_options(**options)
    name, outputs_dir, poll_interval = call.name, call.outputs_dir, call.poll_interval
    function = STEPS.get(name)
    if function is None:
        _fail(f"NAME: {name!r} is not a step ({', '.join(STEPS)})")
    try:
        step_input_ = step_input(call)
    except StepArgsError as exc:
        _fail(str(exc))
    except (ValidationError, AttributeError) as exc:
        _fail(_first_error(exc) if isinstance(exc, ValidationError) else f"--input: {exc}")
    try:
        context = build_step_context()
    except (ValueError, SettingsError) as exc:
        _fail(str(exc))
    while True:
        try:
            outcome = function(context, step_input_)
        except Exception as exc:  # any error of a remote is worth a retry by Argo's retryStrategy
            print(f"canaryflow workflow step {name}: error: {exc}", file=sys.stderr)
            raise typer.Exit(code=EXIT_ERROR) from None
        _write_outputs(outputs_dir, outcome)
        print(f"{name}: {outcome.state}: {outcome.message}", flush=True)
        if outcome.state != "running":
            break
        if poll_interval is None:
            _fail(f"{name}: not done after one call; polled steps need --poll-interval", code=EXIT_ERROR)
        time.sleep(poll_interval)
    if outcome.state == "failed":
        raise typer.Exit(code=EXIT_FAILED)
