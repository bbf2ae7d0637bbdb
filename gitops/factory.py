"""Builds the GitOps adapters from settings: the `GitOpsRepo` and the `ApprovalGate`."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from canaryflow.kernel.serving import ServingConfig
from canaryflow.kernel.types import RolloutSpec
from gitops.git import GitRepo
from gitops.pullrequest import GitHubApproval, github_client
from gitops.settings import GitOpsSettings, TrafficMode


def traffic_mode_from_policy() -> Callable[[RolloutSpec], TrafficMode]:
    """The traffic mode a rollout's policy names (a policy that cannot be loaded is an error)."""
    from policies import load_policy

    @lru_cache(maxsize=32)
    def mode_of(policy: str) -> TrafficMode:
        return load_policy(policy).traffic_mode

    return lambda spec: mode_of(spec.policy)


def serving_from_policy() -> Callable[[RolloutSpec], ServingConfig]:
    """The server a rollout's policy names (`serving`; canaryflow's own by default)."""
    from policies import load_policy

    @lru_cache(maxsize=32)
    def serving_of(policy: str) -> ServingConfig:
        return load_policy(policy).serving

    return lambda spec: serving_of(spec.policy)


def git_repo_from_settings(
    settings: GitOpsSettings,
    *,
    mode_from_policy: bool = True,
    version_source: Callable[[str, str], str] | None = None,
) -> GitRepo:
    """The GitOps repo; traffic modes and servers come from each rollout's policy, else from
    `settings.traffic_mode` and canaryflow's own server; `version_source` resolves a version's artifact
    source in the registry (servers that download their artifacts)."""
    if not mode_from_policy:
        return GitRepo(settings, version_source=version_source)
    return GitRepo(
        settings,
        traffic_mode_for=traffic_mode_from_policy(),
        serving_for=serving_from_policy(),
        version_source=version_source,
    )


def approval_from_settings(settings: GitOpsSettings, repo: GitRepo | None = None) -> GitHubApproval:
    """The pull-request gate; with `repo`, a request first pushes the promotion commit to its branch."""
    if not settings.github_repo:
        raise ValueError("github_repo: the GitHub repository (owner/name) is not set")
    token = settings.github_token.get_secret_value() if settings.github_token else None
    push = None
    if repo is not None:
        git_repo = repo

        def push(spec: RolloutSpec, branch: str) -> object:
            return git_repo.push_branch(spec, 100, "promote", branch)

    return GitHubApproval(
        github_client(settings.github_url, token),
        settings.github_repo,
        settings.branch,
        push_branch=push,
        merge_method=settings.github_merge_method,
    )
