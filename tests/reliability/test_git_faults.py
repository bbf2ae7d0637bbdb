"""Crash leftovers in the working clone and git failures named by their cause (issue 15, finding 3).

A git killed while holding `.git/index.lock` (a SIGKILL of its parent mid-push) used to fail every later
commit on the clone, blaming "an editor opened by 'git commit'". Now a lock whose owner is gone is
removed under canaryflow's own clone lock; a lock a live git process holds is left alone and named.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from canaryflow.kernel.types import RolloutSpec
from gitops.git import GitRepo
from gitops.gitcli import Git as GitCli
from gitops.gitcli import GitAuth, GitError, GitLockHeld, RemoteUnreachable
from gitops.locks import git_processes_in
from tests.gitops.conftest import remote_log


def test_a_lock_left_by_a_killed_git_is_cleared(git_remote: Path, make_settings, spec: RolloutSpec):
    repo = GitRepo(make_settings(git_remote))
    repo.commit_step(spec, 10, "canary")
    for name in ("index.lock", "HEAD.lock", "refs/heads/main.lock"):
        (repo.workdir / ".git" / name).write_text("")
    result = repo.commit_step(spec, 50, "canary")
    assert result.changed and result.sha
    assert remote_log(git_remote, "-1", "--format=%H").strip() == result.sha
    assert not list((repo.workdir / ".git").rglob("*.lock"))
    rolled = repo.rollback(spec, "analysis failed")  # and the rollback lands on the same clone
    assert rolled.changed


def test_a_lock_held_by_a_live_git_is_left_alone_and_named(
    git_remote: Path, make_settings, spec: RolloutSpec
):
    repo = GitRepo(make_settings(git_remote))
    repo.commit_step(spec, 10, "canary")
    lock = repo.workdir / ".git" / "index.lock"
    lock.write_text("")
    # A git still working in the clone (an orphan of a killed parent): it waits on its stdin.
    live = subprocess.Popen(["git", "cat-file", "--batch"], cwd=repo.workdir, stdin=subprocess.PIPE)
    try:
        assert git_processes_in(repo.workdir) == [live.pid]
        with pytest.raises(GitLockHeld) as err:
            repo.commit_step(spec, 50, "canary")
        assert str(live.pid) in str(err.value) and "editor" not in str(err.value)
        assert lock.exists()
    finally:
        live.communicate(b"", timeout=10)
    assert repo.commit_step(spec, 50, "canary").changed  # its owner gone, the lock goes too


def test_git_messages_name_the_cause_never_an_editor(tmp_path: Path):
    git = GitCli(tmp_path, GitAuth(), "a", "a@example.com")
    subprocess.run(["git", "init", "--quiet", str(tmp_path)], check=True)
    (tmp_path / ".git" / "index.lock").write_text("")
    (tmp_path / "f").write_text("x")
    with pytest.raises(GitLockHeld) as err:
        git.run("add", "f")
    assert "index.lock exists" in str(err.value) and "editor" not in str(err.value)
    with pytest.raises(RemoteUnreachable, match="the git remote is unreachable"):
        git.run("ls-remote", str(tmp_path / "no-such-remote.git"))
    with pytest.raises(RemoteUnreachable, match="unreachable"):
        git.run("ls-remote", "http://127.0.0.1:9/repo.git")


def test_a_missing_remote_fails_the_commit_with_its_cause(
    git_remote: Path, make_settings, spec: RolloutSpec, tmp_path: Path
):
    moved = tmp_path / "moved.git"
    repo = GitRepo(make_settings(git_remote))
    repo.commit_step(spec, 10, "canary")
    git_remote.rename(moved)
    with pytest.raises(GitError, match="the git remote is unreachable"):
        repo.commit_step(spec, 50, "canary")
    moved.rename(git_remote)
    assert repo.commit_step(spec, 50, "canary").changed  # back: works again, nothing to clean up
