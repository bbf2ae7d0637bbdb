"""`canaryflow workflow step`, the container entry point of every node, against real git, MLflow and
metrics: outputs land in the files Argo reads, exit codes say failed (1) or error (3)."""

from __future__ import annotations

import json
import random
import subprocess
import threading

import yaml
from typer.testing import CliRunner

from canaryflow.app.cli import app
from tests.workflows.metrics_exporter import Exporter
from tests.workflows.rollout_support import BASELINE_MS, rollout_policy

runner = CliRunner()


def _env(tmp_path, git_remote, tracking_uri, metrics_url="http://127.0.0.1:9/metrics"):
    return {
        "CANARYFLOW_GITOPS_REMOTE_URL": str(git_remote),
        "CANARYFLOW_GITOPS_WORKDIR": str(tmp_path / "clone"),
        "CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI": tracking_uri,
        "CANARYFLOW_METRICS_BACKEND": "scrape",
        "CANARYFLOW_METRICS_SCRAPE_TARGETS": json.dumps([metrics_url]),
    }


def _input(tmp_path, model: str, **params: int) -> str:
    policy_file = tmp_path / "fast.yaml"
    policy_file.write_text(yaml.safe_dump(rollout_policy().model_dump(mode="json")))
    spec = {
        "rollout_id": "cli-1",
        "model": model,
        "baseline_version": "1",
        "canary_version": "2",
        "policy": str(policy_file),
    }
    return json.dumps({"spec": spec, "params": params})


def _head(remote) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(remote), "rev-parse", "main"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_set_weight_writes_the_commit_sha_and_is_idempotent(tmp_path, git_remote, mlflow_server):
    env = _env(tmp_path, git_remote, mlflow_server.tracking_uri)
    args = [
        "workflow",
        "step",
        "set-weight",
        "--input",
        _input(tmp_path, "cli-model", weight=10, step_index=0),
    ]
    out = tmp_path / "out"
    first = runner.invoke(app, [*args, "--outputs-dir", str(out)], env=env)
    assert first.exit_code == 0, first.output
    sha = (out / "commit_sha").read_text()
    assert sha == _head(git_remote)
    again = runner.invoke(app, [*args, "--outputs-dir", str(tmp_path / "out2")], env=env)
    assert again.exit_code == 0, again.output
    assert "already committed" in again.output
    assert (tmp_path / "out2" / "commit_sha").read_text() == sha  # found in the audit log, not re-made
    assert _head(git_remote) == sha


def test_analyze_polls_until_it_decides_and_exits_1_on_a_slower_canary(tmp_path, git_remote, mlflow_server):
    exporter = Exporter("cli-model")
    stop = threading.Event()

    def traffic() -> None:
        rng = random.Random(3)
        while not stop.wait(0.1):
            exporter.serve("1", 300, BASELINE_MS, rng)
            exporter.serve("2", 300, BASELINE_MS * 2, rng)

    feeder = threading.Thread(target=traffic, daemon=True)
    feeder.start()
    try:
        env = _env(tmp_path, git_remote, mlflow_server.tracking_uri, exporter.url)
        out = tmp_path / "out"
        step_input = _input(tmp_path, "cli-model", weight=10, step_index=0)
        result = runner.invoke(
            app,
            [
                "workflow",
                "step",
                "analyze",
                "--input",
                step_input,
                "--outputs-dir",
                str(out),
                "--poll-interval",
                "0.2",
            ],
            env=env,
        )
    finally:
        stop.set()
        feeder.join(timeout=5)
        exporter.close()
    assert result.exit_code == 1, result.output
    assert "analyze: running" in result.output and "analyze: failed" in result.output
    assert (out / "verdict").read_text() == "fail"
    assert json.loads((out / "verdict_json").read_text())["decision"] == "rollback"
    assert "cli-model" in (out / "report.md").read_text()


def test_an_unreachable_remote_is_an_error_exit_3(tmp_path, mlflow_server):
    env = _env(tmp_path, tmp_path / "no-such-remote.git", mlflow_server.tracking_uri)
    step_input = _input(tmp_path, "cli-model", weight=10, step_index=0)
    result = runner.invoke(
        app,
        ["workflow", "step", "set-weight", "--input", step_input, "--outputs-dir", str(tmp_path)],
        env=env,
    )
    assert result.exit_code == 3, result.output
    assert "error" in result.stderr
