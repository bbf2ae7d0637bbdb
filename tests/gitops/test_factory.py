"""Adapters built from settings (env, secret files), and the guards around the working clone."""

from __future__ import annotations

from pathlib import Path

import pytest

from canaryflow.app.wiring import traffic_mode_from_policy
from canaryflow.kernel.ports import GitOpsRepo
from canaryflow.kernel.types import RolloutSpec
from gitops.factory import approval_from_settings, git_repo_from_settings
from gitops.git import GitRepo, absolute_remote
from gitops.gitcli import GitAuth, GitError
from gitops.gitops_settings import GitOpsSettings
from tests.gitops.conftest import git, remote_file
from tests.gitops.github_double import GitHubServer


def test_settings_from_environment_and_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("ghp_from_file\n")
    monkeypatch.delenv("CANARYFLOW_CONFIG", raising=False)
    monkeypatch.setenv("CANARYFLOW_GITOPS_REMOTE_URL", "https://git.example.com/org/gitops.git")
    monkeypatch.setenv("CANARYFLOW_GITOPS_TOKEN_FILE", str(secret))
    monkeypatch.setenv("CANARYFLOW_GITOPS_RENDER__GPU_COUNT", "2")
    settings = GitOpsSettings()
    assert settings.token is not None and settings.token.get_secret_value() == "ghp_from_file"
    assert settings.render.gpu_count == 2
    assert settings.render_options().repo_url == "https://git.example.com/org/gitops.git"
    assert "ghp_from_file" not in repr(settings) and "ghp_from_file" not in str(settings.model_dump())


def test_secrets_are_refused_in_the_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "canaryflow.yaml"
    config.write_text("gitops:\n  github_token: ghp_oops\n")
    monkeypatch.setenv("CANARYFLOW_CONFIG", str(config))
    with pytest.raises(ValueError, match="github_token is a secret"):
        GitOpsSettings()


def test_repo_takes_the_traffic_mode_from_the_policy(
    git_remote: Path, make_settings, spec: RolloutSpec
) -> None:
    repo = git_repo_from_settings(
        make_settings(git_remote, traffic_mode="httproute"), traffic_mode_from_policy()
    )
    assert isinstance(repo, GitOpsRepo)
    repo.commit_step(spec, 10, "inconclusive")
    # the default policy says configmap (read by the application side), whatever the settings' fallback is
    assert "minilm-routing" in remote_file(
        git_remote, "apps/minilm/overlays/production/routing-configmap.yaml"
    )
    fallback = git_repo_from_settings(make_settings(git_remote, name="other", traffic_mode="httproute"))
    fallback.commit_step(spec.model_copy(update={"environment": "staging"}), 10, "inconclusive")
    assert "HTTPRoute" in remote_file(git_remote, "apps/minilm/overlays/staging/httproute.yaml")


def test_approval_from_settings_pushes_the_promotion_branch(
    git_remote: Path, make_settings, spec: RolloutSpec
) -> None:
    with GitHubServer("acme", "gitops") as github:
        settings = make_settings(
            git_remote, github_url=github.url, github_repo="acme/gitops", github_token="t0k"
        )
        gate = approval_from_settings(settings, repo=git_repo_from_settings(settings))
        request = gate.request(spec, "report")
    assert request.id == "1"
    assert {r.authorization for r in github.double.requests} == {"token t0k"}
    assert "Decision: promote" in git(
        "--git-dir", str(git_remote), "log", "-1", "--format=%B", "canaryflow/r-42"
    )


def test_a_deposed_leader_pushes_no_approval_branch(
    git_remote: Path, make_settings, spec: RolloutSpec
) -> None:
    """With replicas the promotion branch is pushed inside the leader's fence, as the steps' commits
    are: a replica that no longer leads opens no pull request and pushes nothing."""
    from collections.abc import Iterator
    from contextlib import contextmanager

    from canaryflow.adapters.database import Deposed

    leading = [True]

    @contextmanager
    def fenced() -> Iterator[None]:
        if not leading[0]:
            raise Deposed("another replica leads now")
        yield

    with GitHubServer("acme", "gitops") as github:
        settings = make_settings(
            git_remote, github_url=github.url, github_repo="acme/gitops", github_token="t"
        )
        gate = approval_from_settings(settings, repo=git_repo_from_settings(settings), fenced=fenced)
        leading[0] = False
        with pytest.raises(Deposed):
            gate.request(spec, "report")
        assert not [r for r in github.double.requests if r.method == "POST"], "a pull request was opened"
    assert git("--git-dir", str(git_remote), "branch", "--list", "canaryflow/r-42").strip() == ""


def test_approval_needs_a_repository(make_settings, git_remote: Path) -> None:
    with pytest.raises(ValueError, match="github_repo"):
        approval_from_settings(make_settings(git_remote))


def test_workdir_that_is_someone_elses_repo_is_left_alone(
    git_remote: Path, make_settings, spec: RolloutSpec, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    git("init", "--quiet", str(project))
    (project / "notes.txt").write_text("mine\n")
    with pytest.raises(GitError, match="not created by canaryflow"):
        GitRepo(make_settings(git_remote, workdir=project)).commit_step(spec, 10, "inconclusive")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine\n")
    with pytest.raises(GitError, match="not empty"):
        GitRepo(make_settings(git_remote, workdir=plain)).commit_step(spec, 10, "inconclusive")
    assert (project / "notes.txt").read_text() == (plain / "notes.txt").read_text() == "mine\n"


def test_missing_remote_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="remote_url"):
        GitRepo(GitOpsSettings(remote_url=""))


def test_local_remotes_become_absolute_urls_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_remote("gitops.git") == str(tmp_path / "gitops.git")
    assert absolute_remote("https://github.com/acme/gitops.git") == "https://github.com/acme/gitops.git"
    assert absolute_remote("git@github.com:acme/gitops.git") == "git@github.com:acme/gitops.git"
    assert absolute_remote("ssh://git@host/acme/gitops.git") == "ssh://git@host/acme/gitops.git"


def test_auth_environment_for_token_and_ssh_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    env = GitAuth(token="abc", ssh_key_path=Path("/keys/id ed25519")).env()
    assert env["GIT_CONFIG_COUNT"] == "2" and env["GIT_CONFIG_KEY_1"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_1"] == "Authorization: Basic eC1hY2Nlc3MtdG9rZW46YWJj"
    assert env["GIT_SSH_COMMAND"] == "ssh -i '/keys/id ed25519' -o IdentitiesOnly=yes -o BatchMode=yes"
    auth = GitAuth(token="abc")
    assert auth.scrub("fatal: https://me:abc@host/x failed, header eC1hY2Nlc3MtdG9rZW46YWJj") == (
        "fatal: https://***@host/x failed, header ***"
    )


def test_branch_names_that_git_would_read_as_options_are_refused() -> None:
    with pytest.raises(ValueError, match="branch"):
        GitOpsSettings(branch="--upload-pack=touch /tmp/x")
