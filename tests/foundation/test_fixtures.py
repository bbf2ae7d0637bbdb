"""Each real-server fixture proves it works: MLflow registers and reads back, Prometheus scrapes and
answers queries, the bare git remote takes a push and gives it back on clone."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
from prometheus_api_client import PrometheusConnect
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from canaryflow.adapters.model_assets import load_minilm, register_minilm
from canaryflow.adapters.registry import MlflowRegistry
from canaryflow.app.local.mlflow_server import MlflowServer
from tests.support.net import free_port

SENTENCES = ["Canary rollouts compare two versions.", "The cat sat on the mat."]


def test_mlflow_registers_model_versions_and_reads_them_back(mlflow_server: MlflowServer) -> None:
    v1 = register_minilm(mlflow_server.tracking_uri, "fixture-minilm")
    v2 = register_minilm(mlflow_server.tracking_uri, "fixture-minilm", variant="perturbed")
    assert (v1, v2) == ("1", "2")

    registry = MlflowRegistry(mlflow_server.tracking_uri)
    registry.set_alias("fixture-minilm", "champion", v1)
    registry.set_alias("fixture-minilm", "challenger", v2)
    assert registry.version_for_alias("fixture-minilm", "champion") == "1"
    assert registry.version_for_alias("fixture-minilm", "challenger") == "2"
    assert registry.version_for_alias("fixture-minilm", "nobody") is None

    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    loaded = mlflow.sentence_transformers.load_model("models:/fixture-minilm@challenger")
    reference = load_minilm().encode(SENTENCES)
    served = loaded.encode(SENTENCES)
    cosine = (reference * served).sum(axis=1)
    # A distinct artefact, behaving as the original does.
    assert not np.array_equal(reference, served)
    assert np.all(cosine > 0.999)


def test_prometheus_scrapes_an_exporter_and_answers_queries(prometheus_server) -> None:
    registry = CollectorRegistry()
    requests = Counter("fixture_requests", "requests", ["version"], registry=registry)
    latency = Histogram("fixture_latency_seconds", "latency", ["version"], registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        requests.labels(version="2").inc(7)
        for value in (0.004, 0.02, 0.3):
            latency.labels(version="2").observe(value)
        prom = prometheus_server([f"127.0.0.1:{port}"])
        client = PrometheusConnect(url=prom.url, disable_ssl=True)
        deadline = time.monotonic() + 30
        result: list[dict] = []
        while time.monotonic() < deadline and not result:
            result = client.custom_query('fixture_requests_total{version="2"}')
            time.sleep(0.3)
        assert result, "Prometheus never scraped the exporter"
        assert float(result[0]["value"][1]) == 7.0
        buckets = client.custom_query('fixture_latency_seconds_bucket{version="2",le="0.025"}')
        assert float(buckets[0]["value"][1]) == 2.0
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_git_remote_takes_a_push_and_clones_it_back(git_remote: Path, tmp_path: Path) -> None:
    def git(*args: str, cwd: Path) -> str:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout

    work = tmp_path / "work"
    git("clone", str(git_remote), str(work), cwd=tmp_path)
    (work / "apps").mkdir()
    (work / "apps" / "hello.yaml").write_text("kind: ConfigMap\n")
    git("add", "apps", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-m", "add", cwd=work)
    git("push", "origin", "main", cwd=work)

    other = tmp_path / "other"
    git("clone", str(git_remote), str(other), cwd=tmp_path)
    assert (other / "apps" / "hello.yaml").read_text() == "kind: ConfigMap\n"
    assert git("log", "--format=%s", cwd=other).splitlines() == ["add", "Initialise GitOps repository"]
