"""The demo, shortened, as CI's end-to-end test: real MLflow, git, inference server, controller and
(when installed) Prometheus; a good canary is promoted and a bad one rolled back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from canaryflow.app.demo.environment import DemoConfig
from canaryflow.app.demo.run import run_demo

pytestmark = pytest.mark.slow


def test_demo_promotes_the_good_canary_and_rolls_back_the_bad_one(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    console = Console(file=(tmp_path / "demo.out").open("w"), width=120)
    rc = run_demo(DemoConfig(workdir=workdir, fast=True), keep=False, console=console)
    console.file.close()
    output = (tmp_path / "demo.out").read_text()
    assert rc == 0, output[-4000:]

    log = subprocess.run(
        ["git", "--git-dir", str(workdir / "gitops.git"), "log", "--format=%s%n%(trailers)%n--", "main"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "promote v2 (was v1)" in log and "Decision: promote" in log
    assert "roll back v3, restore v2" in log and "Decision: rollback" in log

    reports = sorted((workdir / "reports").glob("*.html"))
    assert len(reports) == 2
    for report in reports:
        page = report.read_text()
        assert page.count("data:image/png;base64,") >= 2

    # Every process the demo started is gone.
    leftover = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True).stdout
    assert leftover.strip() == ""
    assert "good canary" in output and "bad canary" in output
    # The registry followed the decisions: champion moved to v2 and stayed there.
    assert "alias champion of minilm now on version 2" in output

    # The controller told the local receiver about every transition, as chat messages and CloudEvents.
    notices = [json.loads(line) for line in (workdir / "notifications.jsonl").read_text().splitlines()]
    titles = [n["title"] for n in notices if n["channel"] == "chat"]
    assert any("v2 promoted (was v1)" in t for t in titles), titles
    assert any("v3 rolled back at step" in t for t in titles), titles
    types = [n["type"] for n in notices if n["channel"] == "cloudevents"]
    assert types.count("io.canaryflow.rollout.started") == 2 and "io.canaryflow.rollout.promoted" in types
    assert "notification" in output and "CloudEvents received" in output

    # After the rollouts the topics shifted: the drift monitor saw it and the alert reached the receiver.
    assert any("champion v2 drifts from its reference" in t for t in titles), titles
    assert "io.canaryflow.drift.detected" in types
    gauge = 'canaryflow_drift_detected{model="minilm",version="2"} = 1'
    assert gauge in output or "Prometheus not found" in output
    assert (workdir / "predictions" / "minilm").is_dir()
