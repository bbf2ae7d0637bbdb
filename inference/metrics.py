"""Prometheus metrics of the inference server (names and labels are a contract with the controller).

Every series carries `model` and `version`. With several worker processes the values live in
prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR) and `/metrics` on any worker
reports the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from canaryflow.core.buckets import LATENCY_BUCKETS_S as LATENCY_BUCKETS
from canaryflow.core.buckets import SHADOW_BUCKETS

# Shared with the analysis engine (canaryflow.core.buckets): ~9% apart, 1 ms to 10 s, so that a
# canary's +10% latency shift moves its quantile into another bucket.
LATENCY_BUCKETS_S = LATENCY_BUCKETS
COSINE_BUCKETS = SHADOW_BUCKETS
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
NO_VERSION = "none"  # label for requests refused before a version was chosen


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class ServerMetrics:
    """All series of one server; a private registry so several servers can live in one test process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        mv = ("model", "version")
        self.request_duration = Histogram(
            "canaryflow_request_duration_seconds",
            "Whole request inside the server: queue, tokenize, forward, encode.",
            mv,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.requests = Counter("canaryflow_requests", "Requests by HTTP status.", (*mv, "code"), registry=r)
        self.gpu_memory = Gauge(
            "canaryflow_gpu_memory_bytes",
            "Weights resident on the serving device (device=cpu: host bytes on a CPU server).",
            (*mv, "device"),
            registry=r,
            multiprocess_mode="livesum",
        )
        self.shadow_distance = Histogram(
            "canaryflow_shadow_cosine_distance",
            "Cosine distance between the canary's and the baseline's embedding of the same input.",
            (*mv, "baseline"),
            buckets=COSINE_BUCKETS,
            registry=r,
        )
        self.shadow_requests = Counter(
            "canaryflow_shadow_requests",
            "Shadow copies sent to the canary, by outcome (ok, error, dropped).",
            (*mv, "outcome"),
            registry=r,
        )
        self.batch_size = Histogram(
            "canaryflow_batch_size", "Texts per dispatched batch.", mv, buckets=BATCH_BUCKETS, registry=r
        )
        self.forward_passes = Counter(
            "canaryflow_forward_passes", "Forward passes (length buckets) run.", mv, registry=r
        )
        self.queue_seconds = Histogram(
            "canaryflow_queue_seconds",
            "Time a request waited before its batch was dispatched.",
            mv,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.tokens = Counter("canaryflow_tokens", "Tokens embedded (without padding).", mv, registry=r)
        self.padded_tokens = Counter(
            "canaryflow_padded_tokens", "Tokens computed including padding.", mv, registry=r
        )
        self.model_loads = Counter(
            "canaryflow_model_loads", "Times a version's weights were placed on the device.", mv, registry=r
        )
        self.model_evictions = Counter(
            "canaryflow_model_evictions",
            "Times a version's weights were moved to host memory to make room.",
            mv,
            registry=r,
        )
        self.routing_weight = Gauge(
            "canaryflow_routing_weight",
            "Traffic weight (percent) of each version now.",
            mv,
            registry=r,
            multiprocess_mode="max",
        )
        self.routing_reloads = Counter(
            "canaryflow_routing_reloads", "Routing file reloads by outcome.", ("outcome",), registry=r
        )
        self.queue_rejections = Counter(
            "canaryflow_queue_rejections", "Requests refused because the queue was full.", mv, registry=r
        )

    def exposition(self) -> bytes:
        path = multiprocess_dir()
        if path:
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=path)
            return generate_latest(merged)
        return generate_latest(self.registry)
