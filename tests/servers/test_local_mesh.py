"""The local stand-in for a cluster running a third-party server: MLServer (its own environment) per
version, HAProxy splitting by the committed HTTPRoute weights, Prometheus discovering each version's
metrics endpoint with the labels the PodMonitor gives a pod's targets."""

from __future__ import annotations

import collections
import json
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

from canaryflow.app.local.gitops_sync import GitOpsSync
from canaryflow.app.local.mesh import LocalMesh
from canaryflow.app.local.mlserver import MLServerLauncher
from canaryflow.app.local.scorer_registry import FEATURES, register_scorer
from canaryflow.kernel.contracts.metrics import TARGET_VERSION_LABEL
from canaryflow.kernel.types import RolloutSpec
from gitops.factory import git_repo_from_settings
from gitops.settings import GitOpsSettings

pytestmark = pytest.mark.prometheus
MODEL = "scorer"


def infer(url: str) -> str:
    """One V2 inference request; returns the version that answered (MLServer names it)."""
    body = {"inputs": [{"name": f, "shape": [1], "datatype": "FP64", "data": [1.0]} for f in FEATURES]}
    req = urllib.request.Request(
        f"{url}/v2/models/{MODEL}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(json.loads(resp.read())["model_version"])


def test_mesh_follows_the_committed_weights(
    mlflow_server, git_remote: Path, tmp_path: Path, mlserver_env: Path, haproxy: str, prometheus_binary_path
) -> None:
    from canaryflow.app.local.prometheus import start_prometheus

    v1 = register_scorer(mlflow_server.tracking_uri, MODEL)
    v2 = register_scorer(mlflow_server.tracking_uri, MODEL, delay_ms=5)
    repo = git_repo_from_settings(
        GitOpsSettings(remote_url=str(git_remote), workdir=tmp_path / "writer", traffic_mode="httproute")
    )
    repo.commit_step(
        RolloutSpec(rollout_id="initial", model=MODEL, baseline_version=v1, canary_version=v1), 100, "promote"
    )

    targets = tmp_path / "targets.json"
    targets.write_text("[]")
    prometheus = start_prometheus(tmp_path / "prometheus", [], interval_s=0.5, file_sd=targets)
    mesh = LocalMesh(
        MLServerLauncher(mlserver_env, tmp_path / "servers", mlflow_server.tracking_uri), tmp_path, targets
    )
    sync = GitOpsSync(str(git_remote), tmp_path / "sync", MODEL, "production", apply=mesh)
    try:
        assert sync.sync_once()
        assert collections.Counter(infer(mesh.url) for _ in range(20)) == {v1: 20}

        spec = RolloutSpec(rollout_id="scorer-v2", model=MODEL, baseline_version=v1, canary_version=v2)
        repo.commit_step(spec, 20, "canary")
        assert sync.sync_once()
        served = collections.Counter(infer(mesh.url) for _ in range(400))
        # Round robin by weight: 20% within a few requests (health checks do not shift the split).
        assert 60 <= served[v2] <= 100 and served[v1] + served[v2] == 400, served

        # Prometheus sees each version's own metrics under the pod's version label.
        infer_path = 'path="/v2/models/{model_name}/infer"'
        query = (
            f"sum by ({TARGET_VERSION_LABEL}) (rest_server_request_duration_seconds_count{{{infer_path}}})"
        )
        deadline = time.monotonic() + 30
        seen: dict[str, float] = {}
        while time.monotonic() < deadline:
            result = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}).json()["data"][
                "result"
            ]
            seen = {r["metric"][TARGET_VERSION_LABEL]: float(r["value"][1]) for r in result}
            if seen.get(v2) == served[v2] and seen.get(v1, 0) >= served[v1] + 20:
                break
            time.sleep(0.5)
        assert seen.get(v2) == served[v2], seen

        repo.commit_step(spec, 100, "promote")
        assert sync.sync_once()
        assert collections.Counter(infer(mesh.url) for _ in range(20)) == {v2: 20}
        assert set(mesh.servers) == {v2}  # the old version's server is pruned
    finally:
        mesh.stop()
        prometheus.stop()
