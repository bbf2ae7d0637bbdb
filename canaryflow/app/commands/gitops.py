"""`canaryflow gitops`: render, diff, commit and roll back the manifests of a model's traffic state.

Thin: every command builds a request from its options and hands it to `gitops`. Bad input exits 2
with one line naming the option, before anything is written; a git or GitHub failure exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from canaryflow.app.commands import serving_options
from canaryflow.app.commands.cli_shared import exit_with_error, rollout_spec, takes_options
from canaryflow.kernel.component_settings import SettingsError
from canaryflow.kernel.contracts.traffic import TRAFFIC_MODES
from canaryflow.kernel.types import CommitResult, RolloutSpec
from gitops.files import diff_rendering, write_rendering
from gitops.git import GitRepo
from gitops.gitcli import GitError
from gitops.gitops_settings import GitOpsSettings, RenderOptions, TrafficMode
from gitops.history import check_decision
from gitops.model import RenderRequest
from gitops.render import render
from gitops.validate import ManifestInvalid, ManifestValidator
from policies import PolicyError, load_policy

app = typer.Typer(help="GitOps manifests: render, diff, commit, roll back.", no_args_is_help=True)

_OPTION_OF = {
    "model": "--model",
    "environment": "--env",
    "canary_version": "--version",
    "weight": "--weight",
    "traffic_mode": "--mode",
    "rollout_id": "--rollout-id",
    "decision": "--decision",
}

Model = Annotated[str, typer.Option("--model", help="model name (a Kubernetes name)")]
Version = Annotated[str, typer.Option("--version", help="the version to roll out (registry version number)")]
Baseline = Annotated[
    str | None,
    typer.Option(
        "--baseline-version", help="the version serving now; omit for the stable state of --version"
    ),
]
Weight = Annotated[int, typer.Option("--weight", help="percent of traffic to --version (0-100)")]
Env = Annotated[str, typer.Option("--env", help="environment (overlay name, e.g. production)")]
Mode = Annotated[
    str | None,
    typer.Option("--mode", help=f"traffic mode: {', '.join(TRAFFIC_MODES)} (default: the policy's)"),
]
Policy = Annotated[
    str, typer.Option("--policy", help="policy whose traffic mode applies when --mode is absent")
]
Remote = Annotated[
    str | None,
    typer.Option("--remote", help="GitOps remote (path or URL); default CANARYFLOW_GITOPS_REMOTE_URL"),
]
RepoUrl = Annotated[
    str | None,
    typer.Option("--repo-url", help="repo URL Argo CD syncs from (default: the GitOps remote)"),
]
Workdir = Annotated[Path | None, typer.Option("--workdir", help="working clone (default from settings)")]
RolloutId = Annotated[
    str, typer.Option("--rollout-id", help="rollout id, recorded in the Rollout-Id trailer")
]


@dataclass(frozen=True)
class Target:
    """Where a traffic state goes: the environment, and the traffic mode (given, or the policy's)."""

    env: str
    mode: str | None
    policy: str


def target_options(env: Env = "production", mode: Mode = None, policy: Policy = "default") -> Target:
    return Target(env, mode, policy)


@dataclass(frozen=True)
class Clone:
    """The GitOps remote and the working clone, where given on the command line (else from settings)."""

    remote: str | None
    workdir: Path | None


def clone_options(remote: Remote = None, workdir: Workdir = None) -> Clone:
    return Clone(remote, workdir)


DEFAULT_TARGET, DEFAULT_CLONE = target_options(), clone_options()  # what a command gets with no option
takes_target = takes_options("target", target_options)
takes_clone = takes_options("clone", clone_options)


def _fail(message: str, code: int = 2) -> NoReturn:
    exit_with_error("gitops", message, code)


def _reason(exc: ValidationError, baseline_given: bool = True) -> str:
    error = exc.errors()[0]
    message = str(error["msg"]).removeprefix("Value error, ")
    field = str(error["loc"][0]) if error["loc"] else ""
    option = _OPTION_OF.get(field) or ("--baseline-version" if baseline_given else "--version")
    if not field:  # a check across fields says which one it is about
        field, _, rest = message.partition(": ")
        option, message = _OPTION_OF.get(field, f"--{field.replace('_', '-')}"), rest or message
    return f"{option}: {message}"


def _settings(clone: Clone | None = None) -> GitOpsSettings:

    try:
        settings = GitOpsSettings()
    except (SettingsError, ValidationError) as exc:
        _fail(f"settings: {str(exc).splitlines()[0]}")
    updates: dict[str, object] = {}
    if clone is not None and clone.remote:
        updates["remote_url"] = clone.remote
    if clone is not None and clone.workdir:
        updates["workdir"] = clone.workdir
    return settings.model_copy(update=updates)


def _mode(target: Target) -> str:
    if target.mode is not None:
        return target.mode
    try:
        return load_policy(target.policy).traffic_mode
    except PolicyError as exc:
        _fail(f"--policy: {exc}")


def _request(
    model: str, version: str, baseline: str | None, weight: int, env: str, mode: str
) -> RenderRequest:

    stable = baseline is None or baseline == version
    values = {
        "model": model,
        "environment": env,
        "baseline_version": version if stable else baseline,
        "canary_version": None if stable else version,
        "weight": weight,
        "traffic_mode": mode,
    }
    try:
        return RenderRequest.model_validate(values)
    except ValidationError as exc:
        _fail(_reason(exc, baseline_given=not stable))


def _spec(rollout_id: str, model: str, version: str, baseline: str, target: Target) -> RolloutSpec:
    return rollout_spec(
        _fail,
        _reason,
        rollout_id=rollout_id,
        model=model,
        canary_version=version,
        baseline_version=baseline,
        environment=target.env,
        policy=target.policy,
    )


def _render_options(settings: GitOpsSettings, repo_url: str | None) -> RenderOptions:
    """Render options with the repo Argo CD syncs from: --repo-url, else as `commit` fills it."""
    options = settings.render_options()
    if repo_url:
        try:  # validated, not copied in: a newline would give Argo CD a repoURL it refuses
            options = type(options).model_validate({**options.model_dump(), "repo_url": repo_url})
        except ValidationError as exc:
            _fail("--repo-url: " + str(exc.errors()[0]["msg"]).removeprefix("Value error, "))
    if not options.repo_url.strip():
        # Argo CD refuses an Application without a source repository.
        _fail("--repo-url: required: the repo Argo CD syncs from (or CANARYFLOW_GITOPS_REMOTE_URL)")
    return options


def _repo(settings: GitOpsSettings, mode: TrafficMode) -> GitRepo:

    if not settings.remote_url:
        _fail("--remote: no GitOps remote given (or CANARYFLOW_GITOPS_REMOTE_URL)")
    return GitRepo(settings, traffic_mode_for=lambda _spec: mode, **serving_options.repo_serving())


def _echo_result(result: CommitResult, unchanged: str) -> None:
    if not result.changed:
        typer.echo(unchanged)
        return
    typer.echo(f"committed {result.sha}")
    typer.echo(result.message, nl=False)


@app.command("render")
@takes_target
def render_command(
    model: Model,
    version: Version,
    out: Annotated[Path, typer.Option("--out", help="directory to write the repo layout into")],
    baseline_version: Baseline = None,
    weight: Weight = 0,
    target: Target = DEFAULT_TARGET,
    repo_url: RepoUrl = None,
    profile: serving_options.Profile = None,
    profile_file: serving_options.ProfileFile = None,
    source: serving_options.Sources = None,
) -> None:
    """Write the manifests of a traffic state (validated) under --out, in the GitOps repo layout."""

    request = _request(model, version, baseline_version, weight, target.env, _mode(target))
    settings = _settings()
    options = _render_options(settings, repo_url)
    registered = options.registered_models.get(model, model)
    request = serving_options.with_serving(
        request, registered, (profile, profile_file, source), target.policy
    )
    rendering = serving_options.render_or_fail(lambda: render(request, options))
    try:
        ManifestValidator(settings.kubernetes_version, settings.schemas_dir).validate_rendering(rendering)
        write_rendering(out, rendering)
    except ManifestInvalid as exc:
        _fail(f"invalid render, nothing written: {exc}", code=1)
    except (OSError, ValueError) as exc:
        _fail(f"--out: {exc}")
    for path in rendering.files:
        typer.echo(str(out / path))


@app.command("diff")
@takes_target
@takes_clone
def diff_command(
    model: Model,
    version: Version,
    baseline_version: Baseline = None,
    weight: Weight = 0,
    target: Target = DEFAULT_TARGET,
    against: Annotated[
        Path | None, typer.Option("--against", help="a checkout to compare with, instead of the remote")
    ] = None,
    clone: Clone = DEFAULT_CLONE,
    repo_url: RepoUrl = None,
) -> None:
    """Show what committing a traffic state would change (nothing printed: nothing would change)."""

    request = _request(model, version, baseline_version, weight, target.env, _mode(target))
    settings = _settings(clone)
    request = serving_options.policy_serving(request, settings, target.policy)
    if against is not None:
        if not against.is_dir():
            _fail(f"--against: {against} is not a directory")
        typer.echo(diff_rendering(against, render(request, _render_options(settings, repo_url))), nl=False)
        return
    try:
        typer.echo(_repo(settings, request.traffic_mode).diff(request), nl=False)
    except GitError as exc:
        _fail(str(exc), code=1)


@app.command("commit")
@takes_target
@takes_clone
def commit_command(
    model: Model,
    version: Version,
    baseline_version: Annotated[str, typer.Option("--baseline-version", help="the version serving now")],
    weight: Weight,
    rollout_id: RolloutId,
    decision: Annotated[
        str, typer.Option("--decision", help="Decision trailer; 'promote' at --weight 100 promotes")
    ] = "canary",
    target: Target = DEFAULT_TARGET,
    clone: Clone = DEFAULT_CLONE,
) -> None:
    """Commit one rollout step (render, validate, commit with trailers, push; retried if raced)."""

    canary = _request(model, version, baseline_version, weight, target.env, _mode(target))
    if canary.is_stable:
        _fail("--baseline-version: must differ from --version for a rollout step")
    try:
        check_decision(decision)
    except ValueError as exc:
        _fail(f"--{exc}")
    spec = _spec(rollout_id, model, version, baseline_version, target)
    repo = _repo(_settings(clone), canary.traffic_mode)
    try:
        result = repo.commit_step(spec, weight, decision)
    except GitError as exc:
        _fail(str(exc), code=1)
    except ValueError as exc:  # the policy's server cannot be rendered so (serving_options)
        _fail(f"--policy: {exc}")
    _echo_result(result, "nothing to commit: the remote already has this state")


@app.command("rollback")
@takes_target
@takes_clone
def rollback_command(
    model: Model,
    version: Annotated[str, typer.Option("--version", help="the canary version being rolled back")],
    baseline_version: Annotated[
        str, typer.Option("--baseline-version", help="the version it was compared to")
    ],
    rollout_id: RolloutId,
    reason: Annotated[str, typer.Option("--reason", help="why; recorded in the commit message")] = "",
    target: Target = DEFAULT_TARGET,
    clone: Clone = DEFAULT_CLONE,
) -> None:
    """Commit the last promoted state of the model again (a new commit; history is kept)."""

    request = _request(model, version, baseline_version, 0, target.env, _mode(target))
    spec = _spec(rollout_id, model, version, baseline_version, target)
    try:
        result = _repo(_settings(clone), request.traffic_mode).rollback(spec, reason)
    except GitError as exc:
        _fail(str(exc), code=1)
    except ValueError as exc:  # the policy's server cannot be rendered so (serving_options)
        _fail(f"--policy: {exc}")
    _echo_result(result, "nothing to commit: the remote already serves the promoted state")


@app.command("log")
@takes_clone
def log_command(
    model: Model,
    env: Env = "production",
    clone: Clone = DEFAULT_CLONE,
) -> None:
    """The audit log of a model in an environment: one line per commit, from its trailers."""

    _request(model, "1", None, 0, env, "configmap")  # refuses bad --model / --env before any git work
    try:
        entries = _repo(_settings(clone), "configmap").audit_log(model, env)
    except GitError as exc:
        _fail(str(exc), code=1)
    for entry in entries:
        t = entry.trailers
        typer.echo(
            f"{entry.sha[:12]} {entry.date} {t.get('Decision', '-'):<12} v{t.get('Model-Version', '-'):<4} "
            f"{t.get('Traffic-Weight', '-'):>3}% {t.get('Rollout-Id', '-')}  {entry.subject}"
        )
