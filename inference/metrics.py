"""Prometheus metrics of the inference server (names and labels are a contract with the controller).

Every series carries `model` and `version`. With several worker processes the values live in
prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR) and `/metrics` on any worker
reports the sum over all of them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from canaryflow.kernel.contracts import metrics as names
from canaryflow.kernel.contracts.buckets import LATENCY_BUCKETS_S as LATENCY_BUCKETS
from canaryflow.kernel.contracts.buckets import SHADOW_BUCKETS

# Shared with the analysis engine (canaryflow.kernel.contracts.buckets): ~9% apart, 1 ms to 10 s, so that a
# canary's +10% latency shift moves its quantile into another bucket.
LATENCY_BUCKETS_S = LATENCY_BUCKETS
COSINE_BUCKETS = SHADOW_BUCKETS
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
NO_VERSION = names.NO_VERSION  # label for requests refused before a version was chosen


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class GraphCaptures(Collector):
    """CUDA graphs this process captured so far, read at scrape time from `cuda_graphs` (0 where it
    was never imported: no GPU model here). A benchmark reads it around a measured phase to tell
    whether captures overlapped it. Not merged across processes: a multi-process server's `/metrics`
    comes from the multiprocess files, where a scrape-time collector has no part."""

    def collect(self) -> Iterator[Metric]:
        graphs = sys.modules.get("inference.models.cuda_graphs")
        count = graphs.captures_total() if graphs is not None else 0
        yield CounterMetricFamily(names.GRAPH_CAPTURES, "CUDA graphs captured by this process.", value=count)


class CacheView(Protocol):
    """What the memory budget counts, as the model cache (`inference.cache.ModelCache`) tells it."""

    def residency(self) -> dict[str, int]: ...

    def idle_slot_bytes(self) -> int: ...


class CacheResidency(Collector):
    """The cache's device memory read at each scrape: how many versions have their weights on the
    device, the bytes they hold and the bytes of idle weight slots. `canaryflow_gpu_memory_bytes`
    is set at the cache's loads and evictions, so a weight slot's graph pools grown since (buckets
    captured in the background) are not in it; here they are, as the budget counts them. A
    benchmark sizes a budget from what one resident version costs under one. Not merged across
    processes, as `GraphCaptures`."""

    def __init__(self, cache: CacheView) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        held = [size for size in self._cache.residency().values() if size > 0]
        yield GaugeMetricFamily(
            names.CACHE_RESIDENT_VERSIONS, "Versions whose weights are on the device now.", value=len(held)
        )
        family = GaugeMetricFamily(
            names.CACHE_DEVICE_BYTES,
            "Device bytes the memory budget counts now: resident versions (weights, a weight slot's "
            "graph pools) and idle weight slots.",
            labels=[names.HOLDER_LABEL],
        )
        family.add_metric(["versions"], sum(held))
        family.add_metric(["idle_slots"], self._cache.idle_slot_bytes())
        yield family


class ServerMetrics:
    """All series of one server; a private registry so several servers can live in one test process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        mv = (names.MODEL_LABEL, names.VERSION_LABEL)
        self.request_duration = Histogram(
            names.REQUEST_DURATION,
            "Whole request inside the server: queue, tokenize, forward, encode.",
            mv,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.requests = Counter(
            names.REQUESTS, "Requests by HTTP status.", (*mv, names.CODE_LABEL), registry=r
        )
        self.gpu_memory = Gauge(
            names.GPU_MEMORY,
            "Weights resident on the serving device (device=cpu: host bytes on a CPU server).",
            (*mv, names.DEVICE_LABEL),
            registry=r,
            multiprocess_mode="livesum",
        )
        self.shadow_distance = Histogram(
            names.SHADOW_DISTANCE,
            "Cosine distance between the canary's and the baseline's embedding of the same input.",
            (*mv, names.BASELINE_LABEL),
            buckets=COSINE_BUCKETS,
            registry=r,
        )
        self.shadow_requests = Counter(
            names.SHADOW_REQUESTS,
            "Shadow copies sent to the canary, by outcome (ok, error, dropped).",
            (*mv, names.OUTCOME_LABEL),
            registry=r,
        )
        self.batch_size = Histogram(
            names.BATCH_SIZE, "Texts per dispatched batch.", mv, buckets=BATCH_BUCKETS, registry=r
        )
        self.forward_passes = Counter(
            names.FORWARD_PASSES, "Forward passes (length buckets) run.", mv, registry=r
        )
        self.queue_seconds = Histogram(
            names.QUEUE_SECONDS,
            "Time a request waited before its batch was dispatched.",
            mv,
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.tokens = Counter(names.TOKENS, "Tokens embedded (without padding).", mv, registry=r)
        self.padded_tokens = Counter(
            names.PADDED_TOKENS, "Tokens computed including padding.", mv, registry=r
        )
        self.model_loads = Counter(
            names.MODEL_LOADS, "Times a version's weights were placed on the device.", mv, registry=r
        )
        self.model_evictions = Counter(
            names.MODEL_EVICTIONS,
            "Times a version's weights were moved to host memory to make room.",
            mv,
            registry=r,
        )
        self.routing_weight = Gauge(
            names.ROUTING_WEIGHT,
            "Traffic weight (percent) of each version now.",
            mv,
            registry=r,
            multiprocess_mode="max",
        )
        r.register(GraphCaptures())
        self.routing_reloads = Counter(
            names.ROUTING_RELOADS, "Routing file reloads by outcome.", (names.OUTCOME_LABEL,), registry=r
        )
        self.queue_rejections = Counter(
            names.QUEUE_REJECTIONS, "Requests refused because the queue was full.", mv, registry=r
        )
        self.prediction_log_dropped = Counter(
            names.PREDICTION_LOG_DROPPED,
            "Prediction-log samples dropped because the writer's queue was full.",
            mv,
            registry=r,
        )
        self.prediction_log_written = Counter(
            names.PREDICTION_LOG_WRITTEN, "Prediction-log records written.", mv, registry=r
        )

    def watch_cache(self, cache: CacheView) -> None:
        """Report what `cache`'s budget counts at each scrape (`CacheResidency`); once a server."""
        self.registry.register(CacheResidency(cache))

    def exposition(self) -> bytes:
        path = multiprocess_dir()
        if path:
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=path)
            return generate_latest(merged)
        return generate_latest(self.registry)
