"""`canaryflow gitops ...` as a user runs it: render, diff, commit, roll back, log; bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from canaryflow.app.cli import app
from tests.gitops.conftest import GOLDEN, remote_file, remote_log

runner = CliRunner()
CANARY = [
    "--model",
    "minilm",
    "--version",
    "4",
    "--baseline-version",
    "3",
    "--weight",
    "10",
    "--env",
    "staging",
]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CANARYFLOW_CONFIG", raising=False)
    for name in ("REMOTE_URL", "WORKDIR", "TOKEN", "TRAFFIC_MODE"):
        monkeypatch.delenv(f"CANARYFLOW_GITOPS_{name}", raising=False)


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_render_writes_the_golden_layout(tmp_path: Path) -> None:
    args = ["gitops", "render", *CANARY, "--mode", "configmap", "--out", "out"]
    result = runner.invoke(app, [*args, "--repo-url", "https://github.com/example/gitops.git"])
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "out") == _files(GOLDEN / "configmap-canary")
    assert "out/apps/minilm/overlays/staging/routing-configmap.yaml" in result.stdout


def test_render_without_a_repo_url_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    """Argo CD refuses an Application with `repoURL: ''`; the render refuses it first."""
    result = runner.invoke(app, ["gitops", "render", *CANARY, "--out", "out"])
    assert result.exit_code == 2
    assert result.stderr.startswith("canaryflow gitops: --repo-url: required")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_repo_url_holding_a_newline_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    """Quoted safely, yet Argo CD cannot clone `repoURL: "https://x/r.git\\nmore"`: refused up front."""
    for url in ("https://x/r.git\nmore", "https://x/r .git", "https://x/r.git\r"):
        result = runner.invoke(app, ["gitops", "render", *CANARY, "--out", "out", "--repo-url", url])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("canaryflow gitops: --repo-url: a URL on one line")
        assert len(result.stderr.splitlines()) == 1
        assert not (tmp_path / "out").exists()


def test_render_takes_the_repo_url_from_the_remote_as_commit_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARYFLOW_GITOPS_REMOTE_URL", "https://git.example.com/org/gitops.git")
    result = runner.invoke(app, ["gitops", "render", *CANARY, "--out", "out"])
    assert result.exit_code == 0, result.output
    app_doc = (tmp_path / "out/argocd/minilm-staging.yaml").read_text()
    assert "repoURL: https://git.example.com/org/gitops.git" in app_doc


def test_mode_defaults_to_the_policy(tmp_path: Path) -> None:
    args = ["gitops", "render", *CANARY, "--out", "out", "--repo-url", "https://x/r.git"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out/apps/minilm/overlays/staging/routing-configmap.yaml").exists()  # default policy


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (["--model", "../../etc"], "--model: '../../etc' is not a valid Kubernetes name"),
        (["--env", "prod/../x"], "--env: 'prod/../x' is not a valid Kubernetes name"),
        (["--weight", "101"], "--weight: Input should be less than or equal to 100"),
        (["--weight", "-5"], "--weight: Input should be greater than or equal to 0"),
        (["--mode", "linkerd"], "--mode: Input should be 'httproute', 'configmap'"),
        (["--version", "champion"], "--version: 'champion' is not a registry version number"),
        (["--baseline-version", "4"], "--weight: 10 splits traffic but there is no canary version"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, change: list[str], reason: str
) -> None:
    args = [*CANARY]
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += change
    result = runner.invoke(app, ["gitops", "render", *args, "--out", "out"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"canaryflow gitops: {reason}")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_diff_against_a_directory(tmp_path: Path) -> None:
    runner.invoke(app, ["gitops", "render", *CANARY, "--out", "checkout", "--repo-url", "https://x/r.git"])
    against = ["--against", "checkout", "--repo-url", "https://x/r.git"]
    unchanged = runner.invoke(app, ["gitops", "diff", *CANARY, *against])
    assert unchanged.exit_code == 0 and unchanged.stdout == ""
    args = [*CANARY]
    args[args.index("--weight") + 1] = "50"
    changed = runner.invoke(app, ["gitops", "diff", *args, *against])
    assert changed.exit_code == 0
    assert "-      weight: 90\n+      weight: 50\n" in changed.stdout


def test_walk_through_commit_diff_promote_rollback_log(git_remote: Path) -> None:
    remote = ["--remote", str(git_remote)]
    step = runner.invoke(app, ["gitops", "commit", *CANARY, "--rollout-id", "r-1", *remote])
    assert step.exit_code == 0, step.output
    assert step.stdout.startswith("committed ") and "Traffic-Weight: 10" in step.stdout

    again = runner.invoke(app, ["gitops", "commit", *CANARY, "--rollout-id", "r-1", *remote])
    assert again.stdout == "nothing to commit: the remote already has this state\n"

    args = [*CANARY]
    args[args.index("--weight") + 1] = "100"
    diff = runner.invoke(app, ["gitops", "diff", *args, *remote])
    assert diff.exit_code == 0 and "+      weight: 100" in diff.stdout
    promote = runner.invoke(
        app, ["gitops", "commit", *args, "--decision", "promote", "--rollout-id", "r-1", *remote]
    )
    assert promote.exit_code == 0, promote.output

    next_step = ["--model", "minilm", "--version", "5", "--baseline-version", "4", "--env", "staging"]
    runner.invoke(app, ["gitops", "commit", *next_step, "--weight", "20", "--rollout-id", "r-2", *remote])
    back = runner.invoke(
        app, ["gitops", "rollback", *next_step, "--rollout-id", "r-2", "--reason", "p99", *remote]
    )
    assert back.exit_code == 0, back.output
    assert "Decision: rollback" in back.stdout
    assert (
        remote_file(git_remote, "apps/minilm/overlays/staging/routing-configmap.yaml").count("version:") == 1
    )

    log = runner.invoke(app, ["gitops", "log", "--model", "minilm", "--env", "staging", *remote])
    decisions = [line.split()[2] for line in log.stdout.splitlines()]
    assert decisions == ["rollback", "canary", "promote", "canary"]
    assert len(remote_log(git_remote, "--format=%H").split()) == 5  # + the seed commit


def test_commit_needs_a_remote_and_a_real_step(git_remote: Path) -> None:
    no_remote = runner.invoke(app, ["gitops", "commit", *CANARY, "--rollout-id", "r-1"])
    assert no_remote.exit_code == 2 and "--remote" in no_remote.stderr
    same = [*CANARY]
    same[same.index("--baseline-version") + 1] = "4"
    same[same.index("--weight") + 1] = "100"
    result = runner.invoke(
        app, ["gitops", "commit", *same, "--rollout-id", "r-1", "--remote", str(git_remote)]
    )
    assert result.exit_code == 2 and "--baseline-version" in result.stderr
    bad = runner.invoke(
        app,
        [
            "gitops",
            "commit",
            *CANARY,
            "--rollout-id",
            "r-1",
            "--decision",
            "Promote!",
            "--remote",
            str(git_remote),
        ],
    )
    assert bad.exit_code == 2 and bad.stderr.startswith("canaryflow gitops: --decision:")


def test_git_failure_exits_1_with_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["gitops", "commit", *CANARY, "--rollout-id", "r-1", "--remote", str(tmp_path / "nope")]
    )
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "git ls-remote" in result.stderr


def test_every_command_has_help() -> None:
    for command in ("render", "diff", "commit", "rollback", "log"):
        result = runner.invoke(app, ["gitops", command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.stdout
