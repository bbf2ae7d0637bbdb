"""Wiring for the rollout tests: real git remote, real MLflow registry, real metrics exporter."""

from __future__ import annotations

import random
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from canaryflow.adapters.metrics.prometheus import PrometheusSource
from canaryflow.adapters.metrics.scrape import ScrapeSource
from canaryflow.adapters.registry import MlflowRegistry
from canaryflow.kernel.types import RolloutSpec, WorkflowStatus
from gitops.factory import git_repo_from_settings
from gitops.git import GitRepo
from gitops.gitops_settings import GitOpsSettings
from gitops.history import read_log
from policies.model import MetricPolicy, Policy, SampleRatioPolicy, TrafficStep
from tests.workflows.metrics_exporter import Exporter
from workflows.local.runner import LocalRunner
from workflows.steps import StepContext, step_runner

BASELINE_MS = 10.0
EXPERIMENT = "canaryflow-workflow-tests"


def rollout_policy(approval: bool = False) -> Policy:
    """Short steps and small samples: a rollout decides in seconds."""
    return Policy.model_validate(
        {
            "name": "fast",
            "steps": [
                TrafficStep(weight=10, min_duration_s=0.5, min_samples=100),
                TrafficStep(weight=50, min_duration_s=0.5, min_samples=100),
            ],
            "metrics": [
                MetricPolicy(
                    name="latency", kind="latency", quantiles=[0.5], tolerance=0.10, alternative=0.25
                ),
                MetricPolicy(name="error_rate", kind="error_rate", tolerance=0.005, alternative=0.02),
            ],
            # The test serves both arms evenly whatever the weight, so the split check does not apply.
            "sample_ratio": SampleRatioPolicy(enabled=False),
            "min_baseline_samples": 100,
            "evaluate_every_s": 0.1,
            "max_duration_s": 120,
            "approval": {"required": approval},
        }
    )


def register_versions(tracking_uri: str, model: str, count: int) -> list[str]:
    """A registered model with `count` versions; the first one holds `champion`."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model(model)
    experiment = client.get_experiment_by_name("canaryflow-workflow-tests")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("canaryflow-workflow-tests")
    )
    versions = []
    for _ in range(count):
        run = client.create_run(experiment_id)
        source = f"{run.info.artifact_uri}/model"
        versions.append(client.create_model_version(model, source=source, run_id=run.info.run_id).version)
    client.set_registered_model_alias(model, "champion", versions[0])
    return [str(v) for v in versions]


def step_context(
    remote: Path, workdir: Path, tracking_uri: str, metrics_url: str, policy: Policy
) -> StepContext:
    repo = git_repo_from_settings(
        GitOpsSettings(
            remote_url=str(remote), workdir=workdir, push_backoff_s=0.05, traffic_mode=policy.traffic_mode
        ),
    )
    return StepContext(
        gitops=repo,
        registry=MlflowRegistry(tracking_uri),
        metrics=ScrapeSource([metrics_url]),
        policy_for=lambda _name: policy,
        check_manifests=repo.render_checked,
        traffic_mode_for=lambda _spec: policy.traffic_mode,
        history=repo,
    )


def local_runner(db: Path, context: StepContext, policy: Policy) -> LocalRunner:
    return LocalRunner(db, step_runner(context), lambda _name: policy)


def drive(
    runner: LocalRunner,
    name: str,
    spec: RolloutSpec,
    exporter: Exporter,
    canary_ms: float,
    until: str | None = None,
    timeout_s: float = 90.0,
) -> WorkflowStatus:
    """Reconciles as the controller would, serving traffic to both versions while a step is analyzed."""
    rng = random.Random(7)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = runner.reconcile(name)
        if status.phase not in ("Pending", "Running") or (until is not None and status.node == until):
            return status
        if status.node and status.node.startswith("analyze-"):
            exporter.serve(spec.baseline_version, 300, BASELINE_MS, rng)
            exporter.serve(spec.canary_version, 300, canary_ms, rng)
        time.sleep(0.1)
    raise AssertionError(f"{name} did not finish in {timeout_s} s: {runner.status(name)}")


def rollout_trailers(remote: Path) -> list[tuple[str, dict[str, str]]]:
    """(sha, trailers) of each rollout commit on main, oldest first."""
    return [(e.sha, e.trailers) for e in reversed(read_log(remote)) if "Rollout-Id" in e.trailers]


def rollout_history(remote: Path) -> list[tuple[str, str, str, str]]:
    """(sha, rollout id, weight, decision) of each rollout commit on main, oldest first."""
    return [(sha, t["Rollout-Id"], t["Traffic-Weight"], t["Decision"]) for sha, t in rollout_trailers(remote)]


def prometheus_step_context(tmp_path: Path, prometheus_url: str, policy: Policy) -> StepContext:
    """For the analyze step alone, which reads metrics only: the other ports point at nothing."""
    repo = GitRepo(GitOpsSettings(remote_url=str(tmp_path / "unused.git"), workdir=tmp_path / "clone"))
    return StepContext(
        gitops=repo,
        registry=MlflowRegistry("http://127.0.0.1:9"),
        metrics=PrometheusSource(prometheus_url),
        policy_for=lambda _name: policy,
        check_manifests=repo.render_checked,
        traffic_mode_for=lambda _spec: "configmap",
    )
