"""Per-window summaries of the prediction log, published as MLflow metrics on the model version's run.

One set of metrics per version and window (`prediction_log.samples`, latency mean/p50/p95, tokens
mean/p95, the embeddings' spread around their centroid), logged with `step` = the window's start in
unix seconds: a version's run then carries its traffic's history as a few series, which scales where a
run per prediction would not. Runs on the prediction log's writer thread, never on the request path; a
registry that cannot be reached costs that window's summary and a warning, nothing else.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from inference.prediction_records import Sample

log = logging.getLogger("canaryflow.inference.prediction_log")

Publish = Callable[[str, str, float, dict[str, float]], None]  # model, version, window start, metrics


@dataclass
class _Accumulator:
    latency_ms: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)


def summarise(acc: _Accumulator) -> dict[str, float]:
    latency = np.asarray(acc.latency_ms)
    tokens = np.asarray(acc.tokens, dtype=float)
    emb = np.asarray(acc.embeddings, dtype=float)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.maximum(norms, 1e-12)
    centroid = unit.mean(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
    return {
        "prediction_log.samples": float(latency.size),
        "prediction_log.latency_ms_mean": float(latency.mean()),
        "prediction_log.latency_ms_p50": float(np.quantile(latency, 0.5)),
        "prediction_log.latency_ms_p95": float(np.quantile(latency, 0.95)),
        "prediction_log.tokens_mean": float(tokens.mean()),
        "prediction_log.tokens_p95": float(np.quantile(tokens, 0.95)),
        "prediction_log.centroid_cosine_mean": float((unit @ centroid).mean()),
    }


class WindowSummary:
    """A sink for the prediction log: accumulates a window per version, publishes it when it ends."""

    def __init__(self, window_s: float, publish: Publish) -> None:
        self.window_s = window_s
        self._publish = publish
        self._start: float | None = None
        self._acc: dict[tuple[str, str], _Accumulator] = {}

    def __call__(self, sample: Sample) -> None:
        start = math.floor(sample.t / self.window_s) * self.window_s
        if self._start is not None and start != self._start:
            self.flush()
        self._start = start
        acc = self._acc.setdefault((sample.model, sample.version), _Accumulator())
        acc.latency_ms.append(sample.latency_ms)
        acc.tokens.append(sample.tokens)
        acc.embeddings.append(sample.embedding)

    def flush(self) -> None:
        if self._start is None:
            return
        for (model, version), acc in self._acc.items():
            try:
                self._publish(model, version, self._start, summarise(acc))
            except Exception as exc:  # the registry being down must not stop the log
                log.warning("prediction summary of %s v%s not published: %s", model, version, exc)
        self._acc.clear()


class MlflowRunMetrics:
    """Publishes a summary on the run that produced the registered version (looked up once)."""

    def __init__(self, tracking_uri: str | None) -> None:
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._runs: dict[tuple[str, str], str | None] = {}

    def run_of(self, model: str, version: str) -> str | None:
        key = (model, version)
        if key not in self._runs:
            self._runs[key] = self._client.get_model_version(model, version).run_id or None
        return self._runs[key]

    def __call__(self, model: str, version: str, window_start: float, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        run_id = self.run_of(model, version)
        if run_id is None:
            return
        stamp_ms = int(window_start * 1000)
        step = int(window_start)
        entries = [Metric(key, value, stamp_ms, step) for key, value in metrics.items()]
        self._client.log_batch(run_id, metrics=entries)
