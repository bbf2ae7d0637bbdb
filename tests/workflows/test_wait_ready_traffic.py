"""Wait-ready confirms a step took effect: with a cluster configured, it reads the live split through the
rollout's traffic router (the composition root's reader, the official kubernetes client against a local
API server on the real REST paths) and waits, saying why, until it is the split the step committed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from canaryflow.adapters.metrics.scrape import ScrapeSource
from canaryflow.adapters.readiness.factory import readiness_from_settings
from canaryflow.adapters.readiness.readiness_settings import KubernetesReadinessSettings
from canaryflow.adapters.registry import MlflowRegistry
from canaryflow.app.wiring import live_traffic_from_settings
from canaryflow.kernel.types import RolloutSpec
from gitops.git import GitRepo
from gitops.gitops_settings import GitOpsSettings
from gitops.model import RenderRequest
from gitops.render import render
from gitops.traffic.cluster import KubernetesObjects
from gitops.yamlio import load_yaml
from tests.controller.test_readiness import deployment
from tests.support.kube_api import KubeApiServer
from workflows.steps import StepContext, StepInput
from workflows.steps.deploy import wait_ready

SPEC = RolloutSpec(rollout_id="r1", model="minilm", baseline_version="1", canary_version="2")
VS_PATH = KubernetesObjects.path("networking.istio.io/v1", "virtualservices", "ml", "minilm")


@pytest.fixture
def server():
    api = KubeApiServer()
    yield api
    api.close()


def _context(tmp_path: Path, server: KubeApiServer, template: str) -> StepContext:
    kubernetes = KubernetesReadinessSettings(host=server.url, namespace="ml", deployment_template=template)
    return _bare_context(
        tmp_path,
        readiness=readiness_from_settings(kubernetes, None),
        live_traffic=live_traffic_from_settings(kubernetes, lambda _spec: "istio"),
    )


def _bare_context(tmp_path: Path, **parts: Any) -> StepContext:
    repo = GitRepo(GitOpsSettings(remote_url=str(tmp_path / "unused.git"), workdir=tmp_path / "clone"))
    return StepContext(
        gitops=repo,
        registry=MlflowRegistry("http://127.0.0.1:9"),
        metrics=ScrapeSource(["http://127.0.0.1:9/metrics"]),
        policy_for=lambda _name: None,  # type: ignore[arg-type,return-value]
        check_manifests=repo.render_checked,
        traffic_mode_for=lambda _spec: "istio",
        **parts,
    )


def _serve_virtual_service(server: KubeApiServer, canary: str | None, weight: int) -> None:
    request = RenderRequest(
        model="minilm",
        environment="ml",
        baseline_version="1",
        canary_version=canary,
        weight=weight,
        traffic_mode="istio",
    )
    text = render(request, GitOpsSettings().render_options()).files[
        "apps/minilm/overlays/ml/virtualservice.yaml"
    ]
    doc = load_yaml(text)
    server.serve(VS_PATH, {**doc, "metadata": {**doc["metadata"], "namespace": "ml"}})


def _step(started_at: float | None = None) -> StepInput:
    return StepInput(spec=SPEC, params={"timeout_s": 600, "weight": 20}, started_at=started_at or time.time())


def test_waits_until_the_live_split_is_the_committed_one(tmp_path: Path, server: KubeApiServer) -> None:
    ctx = _context(tmp_path, server, template="")  # no Deployment to watch, as on KServe Serverless
    assert ctx.readiness is None and ctx.live_traffic is not None

    missing = wait_ready(ctx, _step())
    assert missing.state == "running"
    assert missing.message == "traffic not yet as committed: live nothing, committed v1 80%, v2 20%"

    _serve_virtual_service(server, canary=None, weight=0)  # Argo CD has not synced the step yet
    before = wait_ready(ctx, _step())
    assert before.state == "running" and "live v1 100%, committed v1 80%, v2 20%" in before.message

    _serve_virtual_service(server, canary="2", weight=20)
    after = wait_ready(ctx, _step())
    assert after.state == "succeeded" and after.outputs["ready"] == "true"
    assert after.message == "live traffic as committed (v1 80%, v2 20%)"
    assert any(
        r.startswith("/apis/networking.istio.io/v1/namespaces/ml/virtualservices/minilm")
        for r in server.requests
    )


def test_an_unreadable_split_waits_with_the_reason_then_times_out(
    tmp_path: Path, server: KubeApiServer
) -> None:
    ctx = _context(tmp_path, server, template="")
    server.serve(VS_PATH, {"kind": "Status", "code": 403, "reason": "Forbidden"}, status=403)
    waiting = wait_ready(ctx, _step())
    assert waiting.state == "running"
    assert waiting.message.startswith("traffic split unknown: istio router: Kubernetes API answered 403")
    late = wait_ready(ctx, _step(started_at=time.time() - 700))
    assert late.state == "failed" and late.message.startswith("canary not ready after 600 s: traffic split")


def test_the_canary_deployment_must_be_ready_before_the_split_is_read(
    tmp_path: Path, server: KubeApiServer
) -> None:
    ctx = _context(tmp_path, server, template="{model}-v{version}")
    _serve_virtual_service(server, canary="2", weight=20)
    status_path = "/apis/apps/v1/namespaces/ml/deployments/minilm-v2/status"
    server.serve(status_path, deployment(available=1))
    assert wait_ready(ctx, _step()).message.startswith("canary not ready: ml/minilm-v2 1/2 available")
    server.serve(status_path, deployment())
    done = wait_ready(ctx, _step())
    assert done.state == "succeeded"
    assert done.message == "ml/minilm-v2 2/2 available; live traffic as committed (v1 80%, v2 20%)"


def _serve_page(page: bytes):
    """A /metrics page on loopback, served as the inference server or the local mesh serves theirs."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_without_a_cluster_the_split_is_read_from_the_serving_front(tmp_path: Path) -> None:
    """No cluster: the live split is the inference server's own routing gauge (what it applied from
    the routing file the GitOps sync wrote), read from the page its real metrics object exports."""
    from inference.metrics import ServerMetrics

    metrics = ServerMetrics()
    metrics.routing_weight.labels("minilm", "1").set(80)
    metrics.routing_weight.labels("minilm", "2").set(20)
    metrics.routing_weight.labels("other", "7").set(100)
    server = _serve_page(metrics.exposition())
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        ctx = _bare_context(
            tmp_path, live_traffic=live_traffic_from_settings(None, lambda _spec: "istio", url)
        )
        assert wait_ready(ctx, _step()).state == "succeeded"  # 20% committed, 20% served
        at_50 = StepInput(spec=SPEC, params={"timeout_s": 600, "weight": 50}, started_at=time.time())
        waiting = wait_ready(ctx, at_50)
        assert waiting.state == "running"
        assert (
            waiting.message == "traffic not yet as committed: live v1 80%, v2 20%, committed v1 50%, v2 50%"
        )
        unknown = RolloutSpec(rollout_id="r2", model="bert", baseline_version="1", canary_version="2")
        missing = wait_ready(ctx, StepInput(spec=unknown, params={"timeout_s": 600, "weight": 5}))
        assert (
            missing.state == "running"
            and "reports no canaryflow_routing_weight of model 'bert'" in missing.message
        )
    finally:
        server.shutdown()
        server.server_close()
