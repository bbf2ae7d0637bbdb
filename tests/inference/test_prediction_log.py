"""The prediction log: sampling, a full queue drops and counts, rotation and retention, the records
a real server writes, and the per-window summary as MLflow metrics on the version's run."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np

from canaryflow.adapters.predictions import JsonlDirectoryReader, read_jsonl
from inference.metrics import ServerMetrics
from inference.prediction_log import PredictionLog
from inference.prediction_records import PredictionLogConfig, Sample
from inference.prediction_summary import MlflowRunMetrics, WindowSummary

from .conftest import SENTENCES, routing, running_server

EMB = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)


def _count(metrics: ServerMetrics, name: str, version: str = "1") -> float:
    return metrics.registry.get_sample_value(name, {"model": "m", "version": version}) or 0.0


def _wait_written(metrics: ServerMetrics, n: float, version: str = "1") -> None:
    deadline = time.monotonic() + 10
    while _count(metrics, "canaryflow_prediction_log_written_total", version) < n:
        assert time.monotonic() < deadline, "records not written"
        time.sleep(0.01)


def test_sampling_rate_and_records(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    log = PredictionLog(PredictionLogConfig(tmp_path, rate=0.25), metrics, rng=random.Random(3))
    for _ in range(2000):
        log.maybe_record("m", "1", 0.012, ["a b c"], EMB[:1], [5])
    log.close()
    records = [r for p in sorted((tmp_path / "m").glob("*.jsonl")) for r in read_jsonl(p)]
    assert 400 <= len(records) <= 600  # 25% of 2000, a few standard deviations either side
    first = records[0]
    assert (first.model, first.version, first.tokens, first.text) == ("m", "1", 5, None)
    assert first.latency_ms == 12.0 and np.allclose(first.embedding, EMB[0])
    assert _count(metrics, "canaryflow_prediction_log_written_total") == len(records)


def test_a_full_queue_drops_and_counts_without_waiting(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    release = threading.Event()

    def slow_disk(_: Sample) -> None:  # a sink that blocks holds the writer thread
        release.wait(10)

    log = PredictionLog(PredictionLogConfig(tmp_path, rate=1.0, queue_size=5), metrics, sinks=[slow_disk])
    log.maybe_record("m", "1", 0.01, ["x"], EMB[:1], [1])
    time.sleep(0.2)  # the writer takes the first and blocks in the sink
    started = time.perf_counter()
    for _ in range(100):
        log.maybe_record("m", "1", 0.01, ["x"], EMB[:1], [1])
    assert time.perf_counter() - started < 0.5
    assert _count(metrics, "canaryflow_prediction_log_dropped_total") == 95
    release.set()
    log.close()
    assert _count(metrics, "canaryflow_prediction_log_written_total") == 6


def test_rotation_by_size_and_retention(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    config = PredictionLogConfig(tmp_path, rate=1.0, rotate_bytes=200, keep_files=3)
    now = [1000.0]
    log = PredictionLog(config, metrics, clock=lambda: now[0])
    for i in range(12):
        now[0] += 1.0
        log.maybe_record("m", "1", 0.01, ["x"], EMB[:1], [i])
        _wait_written(metrics, i + 1)
    log.close()
    files = sorted((tmp_path / "m").glob("predictions-*.jsonl"))
    assert len(files) == 3  # rotated many times; the oldest removed
    kept = [r.tokens for p in files for r in read_jsonl(p)]
    assert kept == sorted(kept) and kept[-1] == 11 and len(kept) < 12


def test_multi_input_requests_give_one_record_per_input_with_text_when_asked(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    log = PredictionLog(PredictionLogConfig(tmp_path, rate=1.0, keep_text=True), metrics)
    log.maybe_record("m", "1", 0.02, ["one two", "three"], EMB, [4, 3])
    log.maybe_record("m", "1", 0.02, None, EMB[:1], [7])  # token-id input: no text to keep
    log.close()
    records = JsonlDirectoryReader(tmp_path).read("m", 0, time.time() + 1)
    assert [(r.text, r.tokens) for r in records] == [("one two", 4), ("three", 3), (None, 7)]


def test_a_real_server_logs_what_it_served(tmp_path, loader) -> None:
    config = routing(("1", "mem://minilm", 50, "baseline"), ("2", "mem://minilm-perturbed", 50, "canary"))
    with running_server(config, loader, prediction_log_rate=1.0, prediction_log_dir=tmp_path) as server:
        served = {}
        with server.client() as client:
            for i, text in enumerate(SENTENCES):
                r = client.post("/v1/embeddings", json={"model": "minilm", "input": text},
                                headers={"X-Canary-Key": str(i)})  # fmt: skip
                assert r.status_code == 200
                served[text] = (r.headers["X-Model-Version"], r.json()["data"][0]["embedding"])
        for version in {v for v, _ in served.values()}:
            count = sum(1 for v, _ in served.values() if v == version)
            deadline = time.monotonic() + 10
            while (
                server.metric("canaryflow_prediction_log_written_total", model="minilm", version=version)
                < count
            ):
                assert time.monotonic() < deadline
                time.sleep(0.02)
    records = JsonlDirectoryReader(tmp_path).read("minilm", 0, time.time() + 1)
    assert len(records) == len(SENTENCES)
    by_embedding = {tuple(np.round(e, 4)): v for v, e in served.values()}
    for record in records:
        assert record.text is None and record.tokens > 0 and record.latency_ms > 0
        assert by_embedding[tuple(np.round(record.embedding, 4))] == record.version


def test_window_summary_lands_on_the_versions_run(mlflow_server) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    run = client.create_run(client.create_experiment(f"summary-{time.time_ns()}"))
    name = f"summary-{time.time_ns()}"
    client.create_registered_model(name)
    client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    summary = WindowSummary(60.0, MlflowRunMetrics(mlflow_server.url))
    rng = np.random.default_rng(0)
    for i in range(30):
        summary(Sample(120.0 + i, name, "1", 10.0 + i, 4, rng.standard_normal(4), None))
    summary(Sample(190.0, name, "1", 99.0, 4, rng.standard_normal(4), None))  # next window: the first is sent
    history = client.get_metric_history(run.info.run_id, "prediction_log.samples")
    assert [(m.step, m.value) for m in history] == [(120, 30.0)]
    (mean,) = client.get_metric_history(run.info.run_id, "prediction_log.latency_ms_mean")
    assert mean.value == np.mean(10.0 + np.arange(30))
