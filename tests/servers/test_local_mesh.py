"""The local stand-in for a cluster running a third-party server: MLServer (its own environment) per
version started from the committed overlay, HAProxy splitting by the committed HTTPRoute weights,
Prometheus discovering each version's metrics endpoint with the labels the PodMonitor gives a pod's
targets, and a version that leaves the committed state pruned."""

from __future__ import annotations

import collections
import json
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

from canaryflow.adapters.readiness.server_routing import ServerRouting
from canaryflow.app.local.mesh import ReadinessEndpoint
from canaryflow.app.local.scorer_registry import FEATURES, register_scorer
from canaryflow.kernel.contracts.providers import ARM_VERSION_LABEL
from canaryflow.kernel.types import RolloutSpec
from tests.servers.rollout_env import MODEL, mlserver_cluster, mlserver_policy

pytestmark = pytest.mark.prometheus


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


def _wait(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.25)


def test_mesh_follows_the_committed_weights(
    mlflow_server, git_remote: Path, tmp_path: Path, mlserver_env: Path, haproxy: str, prometheus_binary_path
) -> None:
    uri = mlflow_server.tracking_uri
    v1 = register_scorer(uri, "scorer")
    v2 = register_scorer(uri, "scorer", delay_ms=5)
    with mlserver_cluster(tmp_path, git_remote, uri, mlserver_env, mlserver_policy(), stable=v1) as cluster:
        mesh = cluster.mesh
        assert collections.Counter(infer(mesh.url) for _ in range(20)) == {v1: 20}

        spec = RolloutSpec(rollout_id="scorer-v2", model=MODEL, baseline_version=v1, canary_version=v2)
        cluster.repo.commit_step(spec, 20, "canary")
        _wait(
            lambda: mesh.ready(v2) and mesh.front is not None and mesh.front.upstreams[f"v{v2}"].weight == 20
        )
        served = collections.Counter(infer(mesh.url) for _ in range(400))
        # Round robin by weight: 20% within a few requests (health checks do not shift the split).
        assert 60 <= served[v2] <= 100 and served[v1] + served[v2] == 400, served
        # The split the proxy applies, read back as the controller's wait-ready step reads it.
        endpoint = ReadinessEndpoint(mesh).start()
        try:
            assert ServerRouting(endpoint.url).weights(spec) == {v1: 80, v2: 20}
        finally:
            endpoint.stop()

        # Prometheus sees each version's own metrics under the pod's version label (inference only:
        # MLServer also counts the model-ready probes).
        infer_path = 'path="/v2/models/{model_name}/infer"'
        query = f"sum by ({ARM_VERSION_LABEL}) (rest_server_request_duration_seconds_count{{{infer_path}}})"
        seen: dict[str, float] = {}

        def scraped() -> bool:
            result = httpx.get(f"{cluster.prometheus_url}/api/v1/query", params={"query": query}).json()
            seen.update(
                {r["metric"][ARM_VERSION_LABEL]: float(r["value"][1]) for r in result["data"]["result"]}
            )
            return seen.get(v2) == served[v2] and seen.get(v1, 0) >= served[v1] + 20

        _wait(scraped, 30)

        cluster.repo.commit_step(spec, 100, "promote")
        _wait(lambda: set(mesh.servers) == {v2})  # the old version's pod is pruned
        assert collections.Counter(infer(mesh.url) for _ in range(20)) == {v2: 20}
