"""Builds the GitOps adapters from settings: the `GitOpsRepo` and the `ApprovalGate`.

It reads nothing itself: what a rollout's policy says (its traffic mode) comes in as a function from
the composition root (`canaryflow.app.wiring`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from canaryflow.kernel.contracts.serving_config import ServingConfig
from canaryflow.kernel.types import RolloutSpec
from gitops.git import GitRepo
from gitops.gitops_settings import GitOpsSettings, TrafficMode
from gitops.pullrequest import GitHubApproval, github_client


def git_repo_from_settings(
    settings: GitOpsSettings,
    traffic_mode_for: Callable[[RolloutSpec], TrafficMode] | None = None,
    serving_for: Callable[[RolloutSpec], ServingConfig] | None = None,
    version_source: Callable[[str, str], str] | None = None,
) -> GitRepo:
    """The GitOps repo; each rollout's traffic mode and server from `traffic_mode_for` and `serving_for`
    (the application reads them from the rollout's policy), else `settings.traffic_mode` and canaryflow's
    own server; `version_source` resolves a version's artifact source in the registry (servers that
    download their artifacts)."""
    return GitRepo(
        settings, traffic_mode_for=traffic_mode_for, serving_for=serving_for, version_source=version_source
    )


def approval_from_settings(
    settings: GitOpsSettings,
    repo: GitRepo | None = None,
    fenced: Callable[[], AbstractContextManager[None]] | None = None,
) -> GitHubApproval:
    """The pull-request gate; with `repo`, a request first pushes the promotion commit to its branch,
    inside `fenced()` where replicas run (a deposed leader's push never starts, as for the steps')."""
    if not settings.github_repo:
        raise ValueError("github_repo: the GitHub repository (owner/name) is not set")
    token = settings.github_token.get_secret_value() if settings.github_token else None
    push = None
    if repo is not None:
        git_repo = repo

        def push(spec: RolloutSpec, branch: str) -> object:
            with fenced() if fenced is not None else nullcontext():
                return git_repo.push_branch(spec, 100, "promote", branch)

    return GitHubApproval(
        github_client(settings.github_url, token),
        settings.github_repo,
        settings.branch,
        push_branch=push,
        merge_method=settings.github_merge_method,
    )
