"""A third-party server's rollout on one machine: real MLflow, a real git remote, MLServer (its own
environment) per version started from the committed overlay, HAProxy splitting by the committed
HTTPRoute weights, Prometheus discovering each version's pod, the local runner deciding on what
MLServer itself exports."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from canaryflow.adapters.metrics.prometheus import PrometheusSource
from canaryflow.adapters.registry import MlflowRegistry
from canaryflow.app.local.gitops_sync import GitOpsSync
from canaryflow.app.local.kubelet import ImageEnvironment, image_repository
from canaryflow.app.local.mesh import LocalMesh, RenderedPods
from canaryflow.app.local.mlserver import mlserver_environment
from canaryflow.app.local.prometheus import has_scraped, start_prometheus
from canaryflow.kernel.contracts.providers import ARM_MODEL_LABEL, ARM_VERSION_LABEL
from canaryflow.kernel.types import ReadinessResult, RolloutSpec
from gitops.git import GitRepo
from gitops.gitops_settings import GitOpsSettings, RenderOptions
from policies.model import Policy
from workflows.steps import StepContext

MODEL = "scorer"
ENVIRONMENT = "production"


def mlserver_policy() -> Policy:
    """Short steps for a test; what a team serving with MLServer behind a Gateway would write."""
    return Policy.model_validate(
        {
            "name": "mlserver-e2e",
            "traffic_mode": "httproute",
            "serving": {"profile": "mlserver"},
            "metrics_provider": "mlserver",
            "steps": [
                {"weight": 20, "min_duration_s": 2, "min_samples": 150},
                {"weight": 50, "min_duration_s": 2, "min_samples": 150},
            ],
            "metrics": [
                {
                    "name": "latency",
                    "kind": "latency",
                    "quantiles": [0.5],
                    "tolerance": 0.10,
                    "alternative": 0.5,
                },
                {"name": "error_rate", "kind": "error_rate", "tolerance": 0.01, "alternative": 0.05},
            ],
            "min_baseline_samples": 150,
            "evaluate_every_s": 0.5,
            "max_duration_s": 300,
        }
    )


class MeshReadiness:
    """The canary's pod is ready and the proxy holds it: what the Kubernetes readiness check asks."""

    def __init__(self, mesh: LocalMesh) -> None:
        self.mesh = mesh

    def check(self, spec: RolloutSpec) -> ReadinessResult:
        if self.mesh.ready(spec.canary_version):
            return ReadinessResult(ready=True, reason=f"v{spec.canary_version} ready behind the proxy")
        return ReadinessResult(ready=False, reason=f"v{spec.canary_version} not yet behind the proxy")


def _arm(version: str) -> dict[str, str]:
    return {ARM_MODEL_LABEL: MODEL, ARM_VERSION_LABEL: version}


@dataclass
class Cluster:
    repo: GitRepo
    mesh: LocalMesh
    context: StepContext
    prometheus_url: str


@contextlib.contextmanager
def mlserver_cluster(
    tmp: Path, remote: Path, tracking_uri: str, env: Path, policy: Policy, stable: str
) -> Iterator[Cluster]:
    """Version `stable` committed alone and serving behind the proxy, the mesh following the remote,
    and the steps' context reading Prometheus."""
    options = RenderOptions(tracking_uri=tracking_uri)
    repo = GitRepo(
        GitOpsSettings(remote_url=str(remote), workdir=tmp / "writer", push_backoff_s=0.05, render=options),
        traffic_mode_for=lambda _spec: policy.traffic_mode,
        serving_for=lambda _spec: policy.serving,
    )
    mlserver_repo, mlserver_env = mlserver_environment(env)
    images = {
        mlserver_repo: mlserver_env,
        # MLflow's image: its `mlflow` client is the one in canaryflow's own environment.
        image_repository(options.downloader_image): ImageEnvironment(bin_dir=Path(sys.executable).parent),
    }
    targets = tmp / "targets.json"
    targets.write_text("[]")
    prometheus = start_prometheus(tmp / "prometheus", [], interval_s=1.0, file_sd=targets)
    checkout = tmp / "sync"
    pods = RenderedPods(checkout, ENVIRONMENT, images, tmp / "pods")
    mesh = LocalMesh(pods, tmp, targets, scraped=lambda v: has_scraped(prometheus.url, _arm(v)))
    sync = GitOpsSync(str(remote), checkout, MODEL, ENVIRONMENT, apply=mesh, interval_s=0.5)
    context = StepContext(
        gitops=repo,
        registry=MlflowRegistry(tracking_uri),
        metrics=PrometheusSource(prometheus.url),
        policy_for=lambda _name: policy,
        check_manifests=repo.render_checked,
        traffic_mode_for=lambda _spec: policy.traffic_mode,
        readiness=MeshReadiness(mesh),
    )
    initial = RolloutSpec(rollout_id="initial", model=MODEL, baseline_version=stable, canary_version=stable)
    repo.commit_step(initial, 100, "promote")
    try:
        sync.start()
        yield Cluster(repo=repo, mesh=mesh, context=context, prometheus_url=prometheus.url)
    finally:
        sync.stop()
        mesh.stop()
        prometheus.stop()


def champion(tracking_uri: str) -> str:
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return str(client.get_model_version_by_alias(MODEL, "champion").version)
