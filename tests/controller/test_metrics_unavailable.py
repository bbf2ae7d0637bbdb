"""Prometheus down, or up with no data for the canary: the rollout waits and says why; never promotes.

Real steps (gitops commit to a bare remote, MLflow registry), real local runner, real metrics source.
"""

from __future__ import annotations

import time
import uuid

import pytest
from mlflow.tracking import MlflowClient
from pydantic import SecretStr

from canaryflow.adapters.metrics.prometheus import PrometheusSource
from canaryflow.adapters.registry import MlflowRegistry
from controller.controller_settings import ControllerSettings
from controller.observability import ControllerMetrics
from controller.reconcile import Reconciler
from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore
from gitops.git import GitRepo
from gitops.gitops_settings import GitOpsSettings
from policies.model import Policy, SampleRatioPolicy, TrafficStep
from tests.support.net import free_port
from workflows.local.runner import LocalRunner
from workflows.steps import step_runner
from workflows.steps.context import StepContext

POLICY = Policy(
    name="wait",
    steps=[TrafficStep(weight=10, min_duration_s=0, min_samples=50)],
    sample_ratio=SampleRatioPolicy(enabled=False),
    min_baseline_samples=50,
    max_duration_s=600,
    evaluate_every_s=0.25,  # the step reads the metrics from its first look on
)


def controller_with(metrics, mlflow_server, git_remote, tmp_path):
    model = f"nodata-{uuid.uuid4().hex[:6]}"
    client = MlflowClient(mlflow_server.tracking_uri)
    client.create_registered_model(model)
    for _ in range(2):
        client.create_model_version(model, source=f"s3://models/{model}")
    client.set_registered_model_alias(model, "champion", "1")
    repo = GitRepo(GitOpsSettings(remote_url=str(git_remote), workdir=tmp_path / "work"))
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    ctx = StepContext(
        gitops=repo,
        registry=registry,
        metrics=metrics,
        policy_for=lambda name: POLICY,
        check_manifests=repo.render_checked,
        traffic_mode_for=lambda spec: "configmap",
    )
    settings = ControllerSettings(db_path=tmp_path / "c.db", mlflow_webhook_secret=SecretStr("s"))
    store = RolloutStore(settings.db_path)
    runner = LocalRunner(settings.db_path, step_runner(ctx), lambda name: POLICY)
    reconciler = Reconciler(
        settings, store, runner, registry, ControllerMetrics(store), policy_loader=lambda name: POLICY
    )
    now = time.time()
    store.create_rollout(
        RolloutRecord(
            id=f"{model}-v2",
            model=model,
            baseline_version="1",
            canary_version="2",
            created_at=now,
            updated_at=now,
        )
    )
    return reconciler, store, client, model


def drive(reconciler, store, rid, n=8):
    for _ in range(n):
        reconciler.tick()
        time.sleep(0.1)
    deadline = time.time() + 15  # then until the analysis has read its first look (settled: 1.25 s)
    while "first look" in (store.get(rid).waiting_reason or "") and time.time() < deadline:
        reconciler.tick()
        time.sleep(0.1)
    return store.get(rid)


@pytest.mark.prometheus
def test_prometheus_without_data_waits(prometheus_server, mlflow_server, git_remote, tmp_path):
    prom = prometheus_server([])
    reconciler, store, client, model = controller_with(
        PrometheusSource(prom.url), mlflow_server, git_remote, tmp_path
    )
    got = drive(reconciler, store, f"{model}-v2")
    assert got.phase == "canary" and got.step_index == 0, store.detail(got.id).transitions
    assert got.waiting_reason and "no data" in got.waiting_reason, got.waiting_reason
    assert client.get_model_version_by_alias(model, "champion").version == "1"


def test_prometheus_down_waits(mlflow_server, git_remote, tmp_path):
    dead = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    reconciler, store, client, model = controller_with(dead, mlflow_server, git_remote, tmp_path)
    got = drive(reconciler, store, f"{model}-v2", n=4)
    assert got.phase == "canary", store.detail(got.id).transitions
    assert got.waiting_reason and "prometheus" in got.waiting_reason.lower(), got.waiting_reason
    assert client.get_model_version_by_alias(model, "champion").version == "1"
