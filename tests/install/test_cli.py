"""`canaryflow install render | dashboards | alerts` as a user runs them (CliRunner, in process)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from canaryflow.app.cli import app

runner = CliRunner()


def test_render_writes_a_tree_kustomize_builds(tmp_path: Path) -> None:
    from tests.install.conftest import kustomize

    out = tmp_path / "install"
    result = runner.invoke(
        app,
        ["install", "render", "--out", str(out), "--namespace", "rollouts", "--with-inference",
         "--monitor-label", "release=kube-prometheus-stack"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "kubectl apply -k" in result.output
    docs = kustomize(out / "overlays" / "cpu")
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] == "Deployment"} == {"rollouts"}
    assert not list(out.rglob("*.partial"))


def test_bad_options_exit_2_naming_the_option(tmp_path: Path) -> None:
    for args, option in (
        (["--namespace", "Not_A_Name"], "--namespace"),
        (["--policy", "no-such-policy"], "--policy"),
        (["--monitor-label", "novalue"], "--monitor-label"),
        (["--gitops-repo", "https://x/r.git\nextra: 1"], "--gitops-repo-url"),
        (["--webhook-host", "hooks.example.com\nevil.example.com"], "--webhook-hostname"),
        (["--webhook-host", "Hooks Example"], "--webhook-hostname"),
    ):
        result = runner.invoke(app, ["install", "render", "--out", str(tmp_path / "x"), *args])
        assert result.exit_code == 2 and option in result.output, result.output
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_dashboards_and_alerts(tmp_path: Path) -> None:
    result = runner.invoke(app, ["install", "dashboards", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["canaryflow-inference.json", "canaryflow-rollouts.json"]
    assert json.loads((tmp_path / names[1]).read_text())["uid"] == "canaryflow-rollouts"
    result = runner.invoke(app, ["install", "alerts", "--namespace", "monitoring"])
    assert result.exit_code == 0, result.output
    rule = yaml.safe_load(result.output)
    assert rule["kind"] == "PrometheusRule" and rule["metadata"]["namespace"] == "monitoring"
