"""Wait-ready holds a traffic step until the real Prometheus has scraped the canary's target.

A canary that serves before its first scrape is missing from the first looks, so the sample-ratio
check reads its share as 0% and ends a good rollout inconclusive. Targets come and go through file
discovery with the arm labels the rendered PodMonitor gives every pod; the scraped target is
Prometheus' own /metrics (any target that answers will do)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from canaryflow.adapters.metrics.prometheus import PrometheusSource
from canaryflow.adapters.registry import MlflowRegistry
from canaryflow.app.local.prometheus import start_prometheus
from canaryflow.kernel.contracts.providers import ARM_MODEL_LABEL, ARM_VERSION_LABEL
from canaryflow.kernel.types import RolloutSpec
from gitops.git import GitRepo
from gitops.gitops_settings import GitOpsSettings
from workflows.steps import StepContext, StepInput
from workflows.steps.deploy import wait_ready

SPEC = RolloutSpec(rollout_id="r1", model="minilm", baseline_version="1", canary_version="2")


def _context(tmp_path: Path, url: str) -> StepContext:
    repo = GitRepo(GitOpsSettings(remote_url=str(tmp_path / "unused.git"), workdir=tmp_path / "clone"))
    return StepContext(
        gitops=repo,
        registry=MlflowRegistry("http://127.0.0.1:9"),
        metrics=PrometheusSource(url),
        policy_for=lambda _name: None,  # type: ignore[arg-type,return-value]
        check_manifests=repo.render_checked,
        traffic_mode_for=lambda _spec: "istio",
    )


def _list(path: Path, target: str, versions: list[str]) -> None:
    groups = [
        {"targets": [target], "labels": {ARM_MODEL_LABEL: "minilm", ARM_VERSION_LABEL: v}} for v in versions
    ]
    path.with_suffix(".tmp").write_text(json.dumps(groups))
    os.replace(path.with_suffix(".tmp"), path)


def _until(condition, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_waits_for_the_canarys_first_scrape(tmp_path: Path, prometheus_binary_path: str) -> None:
    targets = tmp_path / "targets.json"
    targets.write_text("[]")
    prometheus = start_prometheus(tmp_path / "prometheus", [], interval_s=0.5, file_sd=targets)
    try:
        source = PrometheusSource(prometheus.url)
        assert source.scraped("minilm", "2") is None  # no target carries the arm labels: nothing to wait for
        _list(targets, f"127.0.0.1:{prometheus.port}", ["1"])
        _until(lambda: source.scraped("minilm", "1"))
        assert source.scraped("minilm", "2") is False

        ctx, step = (
            _context(tmp_path, prometheus.url),
            StepInput(spec=SPEC, params={"timeout_s": 600, "weight": 5}, started_at=time.time()),
        )
        waiting = wait_ready(ctx, step)
        assert waiting.state == "running" and "first scrape of v2" in waiting.message
        late = wait_ready(ctx, step.model_copy(update={"started_at": time.time() - 700}))
        assert late.state == "failed" and "first scrape of v2" in late.message

        _list(targets, f"127.0.0.1:{prometheus.port}", ["1", "2"])
        _until(lambda: source.scraped("minilm", "2"))
        assert wait_ready(ctx, step).state == "succeeded"
        # The promotion's nodes (weight 100 of the new champion, or no weight) wait for nothing more.
        assert wait_ready(ctx, step.model_copy(update={"params": {"timeout_s": 600}})).state == "succeeded"
    finally:
        prometheus.stop()


def test_an_unreachable_store_is_waited_on_not_passed(tmp_path: Path) -> None:
    step = StepInput(spec=SPEC, params={"timeout_s": 600, "weight": 5}, started_at=time.time())
    waiting = wait_ready(_context(tmp_path, "http://127.0.0.1:9"), step)
    assert waiting.state == "running" and "cannot tell whether the canary is scraped yet" in waiting.message
