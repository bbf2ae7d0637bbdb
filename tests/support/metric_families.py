"""The inference servers' metric families as a real prometheus_client exporter serves them, for the
metrics sources' tests: the latency histogram, the request counter, the memory gauge and the shadow
distance histogram, on their own registry and port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from canaryflow.kernel.analysis import DEFAULT_LATENCY_BUCKETS_S, DEFAULT_SHADOW_BUCKETS
from tests.support.net import free_port


@dataclass
class ExportedFamilies:
    """The exporter's port and its four families; tests subclass it with the traffic they serve."""

    port: int
    latency: Histogram
    requests: Counter
    memory: Gauge
    shadow: Histogram


@contextmanager
def exported_families() -> Iterator[ExportedFamilies]:
    """The families, served until the block ends."""
    registry = CollectorRegistry()
    latency = Histogram(
        "canaryflow_request_duration_seconds", "request latency", ["model", "version"],
        buckets=DEFAULT_LATENCY_BUCKETS_S, registry=registry,
    )  # fmt: skip
    requests = Counter("canaryflow_requests", "requests", ["model", "version", "code"], registry=registry)
    memory = Gauge("canaryflow_gpu_memory_bytes", "memory", ["model", "version"], registry=registry)
    shadow = Histogram(
        "canaryflow_shadow_cosine_distance", "shadow distance", ["model", "version", "baseline"],
        buckets=DEFAULT_SHADOW_BUCKETS, registry=registry,
    )  # fmt: skip
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield ExportedFamilies(port, latency, requests, memory, shadow)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
