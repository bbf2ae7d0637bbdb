"""`canaryflow gitops`: render, diff, commit and roll back the manifests of a model's traffic state.

Thin: every command builds a request from its options and hands it to `gitops`. Bad input exits 2
with one line naming the option, before anything is written; a git or GitHub failure exits 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from canaryflow.kernel.contracts.traffic import TRAFFIC_MODES
from canaryflow.kernel.settings import SettingsError
from canaryflow.kernel.types import CommitResult, RolloutSpec
from gitops.files import diff_rendering, write_rendering
from gitops.git import GitRepo
from gitops.gitcli import GitError
from gitops.history import check_decision
from gitops.model import RenderRequest
from gitops.render import render
from gitops.settings import GitOpsSettings, RenderOptions, TrafficMode
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


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"canaryflow gitops: {message}", err=True)
    raise typer.Exit(code=code)


def _reason(exc: ValidationError, baseline_given: bool = True) -> str:
    error = exc.errors()[0]
    message = str(error["msg"]).removeprefix("Value error, ")
    field = str(error["loc"][0]) if error["loc"] else ""
    option = _OPTION_OF.get(field) or ("--baseline-version" if baseline_given else "--version")
    if not field:  # a check across fields says which one it is about
        field, _, rest = message.partition(": ")
        option, message = _OPTION_OF.get(field, f"--{field.replace('_', '-')}"), rest or message
    return f"{option}: {message}"


def _settings(remote: str | None = None, workdir: Path | None = None) -> GitOpsSettings:

    try:
        settings = GitOpsSettings()
    except (SettingsError, ValidationError) as exc:
        _fail(f"settings: {str(exc).splitlines()[0]}")
    updates: dict[str, object] = {}
    if remote:
        updates["remote_url"] = remote
    if workdir:
        updates["workdir"] = workdir
    return settings.model_copy(update=updates)


def _mode(mode: str | None, policy: str) -> str:
    if mode is not None:
        return mode

    try:
        return load_policy(policy).traffic_mode
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


def _spec(rollout_id: str, model: str, version: str, baseline: str, env: str, policy: str) -> RolloutSpec:

    try:
        return RolloutSpec(
            rollout_id=rollout_id,
            model=model,
            canary_version=version,
            baseline_version=baseline,
            environment=env,
            policy=policy,
        )
    except ValidationError as exc:
        _fail(_reason(exc))


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
    return GitRepo(settings, traffic_mode_for=lambda _spec: mode)


def _echo_result(result: CommitResult, unchanged: str) -> None:
    if not result.changed:
        typer.echo(unchanged)
        return
    typer.echo(f"committed {result.sha}")
    typer.echo(result.message, nl=False)


@app.command("render")
def render_command(
    model: Model,
    version: Version,
    out: Annotated[Path, typer.Option("--out", help="directory to write the repo layout into")],
    baseline_version: Baseline = None,
    weight: Weight = 0,
    env: Env = "production",
    mode: Mode = None,
    policy: Policy = "default",
    repo_url: RepoUrl = None,
) -> None:
    """Write the manifests of a traffic state (validated) under --out, in the GitOps repo layout."""

    request = _request(model, version, baseline_version, weight, env, _mode(mode, policy))
    settings = _settings()
    options = _render_options(settings, repo_url)
    rendering = render(request, options)
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
def diff_command(
    model: Model,
    version: Version,
    baseline_version: Baseline = None,
    weight: Weight = 0,
    env: Env = "production",
    mode: Mode = None,
    policy: Policy = "default",
    against: Annotated[
        Path | None, typer.Option("--against", help="a checkout to compare with, instead of the remote")
    ] = None,
    remote: Remote = None,
    workdir: Workdir = None,
    repo_url: RepoUrl = None,
) -> None:
    """Show what committing a traffic state would change (nothing printed: nothing would change)."""

    chosen = _mode(mode, policy)
    request = _request(model, version, baseline_version, weight, env, chosen)
    settings = _settings(remote, workdir)
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
def commit_command(
    model: Model,
    version: Version,
    baseline_version: Annotated[str, typer.Option("--baseline-version", help="the version serving now")],
    weight: Weight,
    rollout_id: RolloutId,
    decision: Annotated[
        str, typer.Option("--decision", help="Decision trailer; 'promote' at --weight 100 promotes")
    ] = "canary",
    env: Env = "production",
    mode: Mode = None,
    policy: Policy = "default",
    remote: Remote = None,
    workdir: Workdir = None,
) -> None:
    """Commit one rollout step (render, validate, commit with trailers, push; retried if raced)."""

    chosen = _mode(mode, policy)
    canary = _request(model, version, baseline_version, weight, env, chosen)
    if canary.is_stable:
        _fail("--baseline-version: must differ from --version for a rollout step")
    try:
        check_decision(decision)
    except ValueError as exc:
        _fail(f"--{exc}")
    spec = _spec(rollout_id, model, version, baseline_version, env, policy)
    repo = _repo(_settings(remote, workdir), canary.traffic_mode)
    try:
        result = repo.commit_step(spec, weight, decision)
    except GitError as exc:
        _fail(str(exc), code=1)
    _echo_result(result, "nothing to commit: the remote already has this state")


@app.command("rollback")
def rollback_command(
    model: Model,
    version: Annotated[str, typer.Option("--version", help="the canary version being rolled back")],
    baseline_version: Annotated[
        str, typer.Option("--baseline-version", help="the version it was compared to")
    ],
    rollout_id: RolloutId,
    reason: Annotated[str, typer.Option("--reason", help="why; recorded in the commit message")] = "",
    env: Env = "production",
    mode: Mode = None,
    policy: Policy = "default",
    remote: Remote = None,
    workdir: Workdir = None,
) -> None:
    """Commit the last promoted state of the model again (a new commit; history is kept)."""

    request = _request(model, version, baseline_version, 0, env, _mode(mode, policy))
    spec = _spec(rollout_id, model, version, baseline_version, env, policy)
    try:
        result = _repo(_settings(remote, workdir), request.traffic_mode).rollback(spec, reason)
    except GitError as exc:
        _fail(str(exc), code=1)
    _echo_result(result, "nothing to commit: the remote already serves the promoted state")


@app.command("log")
def log_command(
    model: Model,
    env: Env = "production",
    remote: Remote = None,
    workdir: Workdir = None,
) -> None:
    """The audit log of a model in an environment: one line per commit, from its trailers."""

    _request(model, "1", None, 0, env, "configmap")  # refuses bad --model / --env before any git work
    try:
        entries = _repo(_settings(remote, workdir), "configmap").audit_log(model, env)
    except GitError as exc:
        _fail(str(exc), code=1)
    for entry in entries:
        t = entry.trailers
        typer.echo(
            f"{entry.sha[:12]} {entry.date} {t.get('Decision', '-'):<12} v{t.get('Model-Version', '-'):<4} "
            f"{t.get('Traffic-Weight', '-'):>3}% {t.get('Rollout-Id', '-')}  {entry.subject}"
        )
