"""Git operations against real bare repositories: steps, trailers, re-runs, races, rollback, secrets."""

from __future__ import annotations

import base64
import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from canaryflow.kernel.types import RolloutSpec
from gitops.files import routing_from_checkout
from gitops.git import GitRepo
from gitops.gitcli import GitError
from gitops.history import parse_log
from gitops.validate import ManifestInvalid, ManifestValidator
from tests.gitops.conftest import git, remote_file, remote_log

OVERLAY = "apps/minilm/overlays/production"


def trailers(remote: Path, ref: str = "main") -> dict[str, str]:
    out = git("--git-dir", str(remote), "log", "-1", "--format=%(trailers:only,unfold)", ref)
    return dict(line.split(": ", 1) for line in out.strip().splitlines())


def commit_count(remote: Path) -> int:
    return int(git("--git-dir", str(remote), "rev-list", "--count", "main").strip())


def test_step_commit_lands_with_audit_trailers(git_remote: Path, make_settings, spec: RolloutSpec) -> None:
    repo = GitRepo(make_settings(git_remote))
    result = repo.commit_step(spec, 10, "inconclusive")
    assert result.changed
    assert result.sha == git("--git-dir", str(git_remote), "rev-parse", "main").strip()
    assert trailers(git_remote) == {
        "Rollout-Id": "r-42",
        "Model-Version": "2",
        "Traffic-Weight": "10",
        "Decision": "inconclusive",
        "Policy": "default",
    }
    assert "minilm/production: canary v2 at 10%" in remote_log(git_remote, "-1", "--format=%s")
    assert "weight: 10" in remote_file(git_remote, f"{OVERLAY}/routing-configmap.yaml")
    assert remote_file(git_remote, "README.md")  # what was there before stays


def test_rerun_of_the_same_step_commits_nothing(git_remote: Path, make_settings, spec: RolloutSpec) -> None:
    repo = GitRepo(make_settings(git_remote))
    first = repo.commit_step(spec, 25, "inconclusive")
    before = commit_count(git_remote)
    # A fresh clone (another process, after a restart) must agree: the render is byte-identical.
    again = GitRepo(make_settings(git_remote, name="other")).commit_step(spec, 25, "inconclusive")
    assert first.changed and not again.changed and again.sha is None
    assert commit_count(git_remote) == before


def test_promotion_leaves_the_canary_alone_at_full_weight(
    git_remote: Path, make_settings, spec: RolloutSpec, tmp_path: Path
) -> None:
    repo = GitRepo(make_settings(git_remote, traffic_mode="httproute"))
    repo.commit_step(spec, 50, "inconclusive")
    repo.commit_step(spec, 100, "promote")
    files = git("--git-dir", str(git_remote), "ls-tree", "-r", "--name-only", "main", OVERLAY).split()
    assert sorted(Path(f).name for f in files) == [
        "deployment-v2.yaml",
        "httproute.yaml",
        "kustomization.yaml",
        "service-v2.yaml",
    ]
    assert trailers(git_remote)["Decision"] == "promote"
    assert trailers(git_remote)["Traffic-Weight"] == "100"


def test_rollback_restores_the_last_promoted_state_as_a_new_commit(
    git_remote: Path, make_settings, tmp_path: Path
) -> None:
    repo = GitRepo(make_settings(git_remote))
    first = RolloutSpec(rollout_id="r-1", model="minilm", baseline_version="1", canary_version="2")
    repo.commit_step(first, 50, "inconclusive")
    promoted = repo.commit_step(first, 100, "promote")
    stable = remote_file(git_remote, f"{OVERLAY}/routing-configmap.yaml")

    second = RolloutSpec(rollout_id="r-2", model="minilm", baseline_version="2", canary_version="3")
    step = repo.commit_step(second, 10, "inconclusive")
    result = repo.rollback(second, "latency p99 +40%\nsecond line")

    assert result.changed and result.sha not in (promoted.sha, step.sha)
    assert remote_file(git_remote, f"{OVERLAY}/routing-configmap.yaml") == stable
    assert trailers(git_remote) == {
        "Rollout-Id": "r-2",
        "Model-Version": "2",
        "Traffic-Weight": "0",
        "Decision": "rollback",
        "Policy": "default",
        "Reason": "latency p99 +40% second line",
    }
    body = remote_log(git_remote, "-1", "--format=%B")
    assert "Reason: latency p99 +40% second line" in body
    # History is kept: the failed step is still an ancestor of the rollback.
    git("--git-dir", str(git_remote), "merge-base", "--is-ancestor", str(step.sha), "main")
    # And a checkout reads the restored routing back.
    checkout = tmp_path / "checkout"
    git("clone", "--quiet", str(git_remote), str(checkout))
    assert [
        (v.version, v.weight) for v in routing_from_checkout(checkout, "minilm", "production").versions
    ] == [("2", 100)]


def test_rollback_without_a_promotion_restores_the_baseline(
    git_remote: Path, make_settings, spec: RolloutSpec
) -> None:
    repo = GitRepo(make_settings(git_remote))
    repo.commit_step(spec, 10, "inconclusive")
    repo.rollback(spec, "error rate")
    config = remote_file(git_remote, f"{OVERLAY}/routing-configmap.yaml")
    assert "version: '1'" in config and "version: '2'" not in config
    assert trailers(git_remote)["Model-Version"] == "1"
    entries = parse_log(
        remote_log(git_remote, "--format=%H%x1f%aI%x1f%an%x1f%s%x1f%(trailers:only,unfold)%x1e")
    )
    assert [e.decision for e in entries] == ["rollback", "inconclusive", None]


def test_first_commit_into_an_empty_remote(empty_remote: Path, make_settings, spec: RolloutSpec) -> None:
    result = GitRepo(make_settings(empty_remote)).commit_step(spec, 5, "inconclusive")
    assert result.changed and commit_count(empty_remote) == 1


class _RaceLosingRepo(GitRepo):
    """Lets another rollout push between this clone's fetch and its first push: the race, for real."""

    def __init__(self, *args, rival: GitRepo, rival_spec: RolloutSpec, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rival, self.rival_spec, self.pushes = rival, rival_spec, 0

    def _push(self, branch: str, force: bool) -> None:
        self.pushes += 1
        if self.pushes == 1:
            self.rival.commit_step(self.rival_spec, 20, "inconclusive")
        super()._push(branch, force)


def test_push_rejected_because_the_remote_moved_is_redone_on_the_new_head(
    git_remote: Path, make_settings, spec: RolloutSpec, caplog: pytest.LogCaptureFixture
) -> None:
    other = RolloutSpec(rollout_id="r-7", model="bge-small", baseline_version="4", canary_version="5")
    rival = GitRepo(make_settings(git_remote, name="rival"))
    repo = _RaceLosingRepo(make_settings(git_remote), rival=rival, rival_spec=other)
    with caplog.at_level(logging.INFO, logger="gitops.git"):
        result = repo.commit_step(spec, 10, "inconclusive")
    assert repo.pushes == 2 and "lost a race" in caplog.text
    log = remote_log(git_remote, "--format=%s").splitlines()
    assert log[:2] == [
        "minilm/production: canary v2 at 10% (baseline v1)",
        "bge-small/production: canary v5 at 20% (baseline v4)",
    ]
    assert result.sha == git("--git-dir", str(git_remote), "rev-parse", "main").strip()


def test_push_gives_up_after_the_bounded_attempts(git_remote: Path, make_settings, spec: RolloutSpec) -> None:
    other = RolloutSpec(rollout_id="r-7", model="bge-small", baseline_version="4", canary_version="5")

    class AlwaysLosing(GitRepo):
        weights = iter(range(1, 100))

        def _push(self, branch: str, force: bool) -> None:
            rival.commit_step(other, next(self.weights), "inconclusive")
            super()._push(branch, force)

    rival = GitRepo(make_settings(git_remote, name="rival"))
    repo = AlwaysLosing(make_settings(git_remote, push_attempts=3))
    with pytest.raises(GitError, match="gave up after 3 attempts"):
        repo.commit_step(spec, 10, "inconclusive")
    assert "minilm" not in remote_log(git_remote, "--format=%s")


def test_concurrent_rollouts_of_different_models_all_land(git_remote: Path, make_settings) -> None:
    models = ["minilm", "bge-small", "e5-base"]
    repos = [GitRepo(make_settings(git_remote, name=f"clone-{m}")) for m in models]
    barrier = threading.Barrier(len(models))
    errors: list[BaseException] = []

    def roll(repo: GitRepo, model: str) -> None:
        spec = RolloutSpec(rollout_id=f"r-{model}", model=model, baseline_version="1", canary_version="2")
        try:
            barrier.wait()
            for weight in (10, 50, 100):
                repo.commit_step(spec, weight, "promote" if weight == 100 else "inconclusive")
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=roll, args=(r, m)) for r, m in zip(repos, models, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    subjects = remote_log(git_remote, "--format=%s")
    for model in models:
        assert subjects.count(f"{model}/production:") == 3
        assert "version: '2'" in remote_file(
            git_remote, f"apps/{model}/overlays/production/routing-configmap.yaml"
        )
    assert commit_count(git_remote) == 1 + 3 * len(models)


def test_an_invalid_render_never_reaches_git(git_remote: Path, make_settings, spec: RolloutSpec) -> None:
    settings = make_settings(git_remote, traffic_mode="httproute")
    settings.render = settings.render.model_copy(update={"gateway_name": ""})
    before = commit_count(git_remote)
    with pytest.raises(ManifestInvalid, match=r"parentRefs\.0\.name"):
        GitRepo(settings).commit_step(spec, 10, "inconclusive")
    assert commit_count(git_remote) == before


def test_bad_decision_word_is_refused(git_remote: Path, make_settings, spec: RolloutSpec) -> None:
    with pytest.raises(ValueError, match="decision"):
        GitRepo(make_settings(git_remote)).commit_step(spec, 10, "promote\nRollout-Id: forged")


class _AuthRecorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization", ""))
        self.send_response(403)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_git_server() -> Iterator[str]:
    _AuthRecorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthRecorder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/org/gitops.git"
    server.shutdown()
    server.server_close()


def test_token_goes_in_a_header_and_never_into_messages(
    http_git_server: str, git_remote: Path, make_settings, spec: RolloutSpec, caplog: pytest.LogCaptureFixture
) -> None:
    token = "ghp_s3cr3tT0ken"
    settings = make_settings(http_git_server, token=token)
    with caplog.at_level(logging.DEBUG), pytest.raises(GitError) as info:
        GitRepo(settings).commit_step(spec, 10, "inconclusive")
    expected = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert f"Basic {expected}" in _AuthRecorder.seen
    assert token not in str(info.value) and expected not in str(info.value)
    assert token not in caplog.text
    workdir = Path(settings.workdir)
    assert token not in (workdir / ".git" / "config").read_text()
    assert token not in repr(settings)

    # Against a remote that works, nothing of the token ends up in history either.
    repo = GitRepo(make_settings(git_remote, name="ok", token=token))
    repo.commit_step(spec, 10, "inconclusive")
    repo.rollback(spec, f"failed with token {token}")
    log = remote_log(git_remote, "--format=%B")
    assert token not in log and "failed with token ***" in log


def test_validator_is_shared_settings_driven(git_remote: Path, make_settings) -> None:
    repo = GitRepo(make_settings(git_remote, kubernetes_version="1.31"))
    assert isinstance(repo.validator, ManifestValidator) and repo.validator.kubernetes_version == "1.31"


def test_repos_sharing_one_working_clone_take_turns(git_remote: Path, make_settings) -> None:
    models = ["minilm", "bge-small"]
    repos = [GitRepo(make_settings(git_remote, name="shared")) for _ in models]
    errors: list[BaseException] = []

    def roll(repo: GitRepo, model: str) -> None:
        spec = RolloutSpec(rollout_id=f"r-{model}", model=model, baseline_version="1", canary_version="2")
        try:
            for weight in (10, 20, 30):
                repo.commit_step(spec, weight, "canary")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=roll, args=(r, m)) for r, m in zip(repos, models, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert commit_count(git_remote) == 1 + 3 * len(models)


def test_a_promote_decision_below_full_weight_is_not_a_promoted_state(
    git_remote: Path, make_settings, spec: RolloutSpec
) -> None:
    repo = GitRepo(make_settings(git_remote))
    repo.commit_step(spec, 50, "promote")  # a step that passed, not the promotion
    repo.rollback(spec, "later step failed")
    assert trailers(git_remote)["Model-Version"] == "1"


def test_a_remote_that_never_answers_fails_after_the_bound(
    make_settings, spec: RolloutSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from gitops import gitcli

    monkeypatch.setattr(gitcli, "GIT_TIMEOUT_S", 1.0)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        remote = f"http://127.0.0.1:{silent.getsockname()[1]}/org/gitops.git"
        with pytest.raises(GitError, match="no answer within 1s"):
            GitRepo(make_settings(remote)).commit_step(spec, 10, "canary")
