"""`canaryflow gitops render --profile NAME | --profile-file FILE [--source VERSION=URI ...]`: which
server the rendered workload runs (docs/servers.md).

Without them the policy's `serving` section applies (default: canaryflow's own server). A profile file
is a policy's `serving:` section on its own (YAML), e.g. a `custom` server's template. `--source`
gives a version's artifact source as the registry records it; without it the source is resolved
through the registry named by CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI where one is set, else the
pinned `models:/` URI stands (the download init container resolves it; KServe cannot).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from canaryflow.kernel.component_settings import SettingsError
from canaryflow.kernel.contracts.serving_config import ServingConfig
from canaryflow.kernel.guarded_input import InputRefused, parse_yaml, read_regular_file
from gitops.gitops_settings import GitOpsSettings
from gitops.model import RenderRequest
from policies import PolicyError, load_policy, validation_message

T = TypeVar("T")

Profile = Annotated[
    str | None,
    typer.Option(
        "--profile", help="serving profile: canaryflow, vllm, triton, tei, mlserver, kserve-runtime, custom"
    ),
]
ProfileFile = Annotated[
    Path | None,
    typer.Option(
        "--profile-file", help="a policy's serving: section as YAML (custom templates, model_format)"
    ),
]
Sources = Annotated[
    list[str] | None,
    typer.Option("--source", help="VERSION=URI: a version's artifact source (repeatable)"),
]


def _fail(message: str) -> NoReturn:
    typer.echo(f"canaryflow gitops: {message}", err=True)
    raise typer.Exit(code=2)


def serving_config(profile: str | None, profile_file: Path | None, policy: str) -> ServingConfig:
    """The serving section: the file's, with --profile on top, else the policy's."""
    data: dict[str, object] = {}
    if profile_file is not None:
        try:
            loaded = parse_yaml(read_regular_file(profile_file, where="--profile-file"), "--profile-file")
        except InputRefused as exc:
            _fail(str(exc))
        if not isinstance(loaded, dict):
            _fail("--profile-file: must be a mapping (a policy's serving: section)")
        data = dict(loaded.get("serving", loaded))
    elif profile is None:
        try:
            return load_policy(policy).serving
        except PolicyError as exc:
            _fail(f"--policy: {exc}")
    if profile is not None:
        data["profile"] = profile
    try:
        return ServingConfig.model_validate(data)
    except ValidationError as exc:
        option = "--profile-file" if profile_file is not None else "--profile"
        _fail(f"{option}: serving.{validation_message(exc)}")


def resolved_sources(
    model: str, registered: str, versions: list[str], given: list[str] | None
) -> dict[str, str]:
    sources: dict[str, str] = {}
    for item in given or []:
        version, sep, uri = item.partition("=")
        if not sep or not uri or not version.isdigit():
            _fail(f"--source: {item!r} is not VERSION=URI")
        sources[version] = uri
    missing = [v for v in versions if v not in sources]
    if missing:
        from canaryflow.app.wiring import version_sources

        resolve = version_sources()
        if resolve is not None:
            try:
                sources |= {v: resolve(registered, v) for v in missing}
            except Exception as exc:  # the registry's own reason, on one line
                _fail(
                    f"--source: resolving {model} v{missing[0]} in the registry: {str(exc).splitlines()[0]}"
                )
    return sources


def with_serving(
    request: RenderRequest,
    registered: str,
    choice: tuple[str | None, Path | None, list[str] | None],
    policy: str,
) -> RenderRequest:
    """`request` with the chosen server and its versions' artifact sources (`choice`: the --profile,
    --profile-file and --source options)."""
    profile, profile_file, sources = choice
    serving = serving_config(profile, profile_file, policy)
    versions = [v for v in (request.baseline_version, request.canary_version) if v]
    found = {}
    if serving.profile != "canaryflow":
        found = resolved_sources(request.model, registered, versions, sources)
    return request.model_copy(update={"serving": serving, "sources": found})


def render_or_fail(render: Callable[[], T]) -> T:
    """A render refused for its serving choice (a configmap router and a one-version server, a source
    KServe cannot read) exits 2 with the reason, before anything is written."""
    try:
        return render()
    except ValueError as exc:
        _fail(f"--profile: {exc}")


def repo_serving() -> dict[str, Any]:
    """GitRepo arguments for `gitops commit|rollback|diff`: the server each rollout's policy names, sources
    from the registry where one is configured (else the pinned `models:/` URI stands)."""
    from canaryflow.app.wiring import serving_from_policy, version_sources

    try:
        source = version_sources()
    except (SettingsError, ValidationError) as exc:
        _fail(f"settings: {str(exc).splitlines()[0]}")
    return {"serving_for": serving_from_policy(), "version_source": source}


def policy_serving(request: RenderRequest, settings: GitOpsSettings, policy: str) -> RenderRequest:
    """`request` as `--policy`'s rollouts render it (`gitops diff`)."""
    from gitops.render import render

    registered = settings.render.registered_models.get(request.model, request.model)
    served = with_serving(request, registered, (None, None, None), policy)
    render_or_fail(lambda: render(served, settings.render_options()))  # refused before any git work
    return served
