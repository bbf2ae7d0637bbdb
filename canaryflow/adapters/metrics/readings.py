"""Cumulative counters of one model version at one moment, and the observations between two readings.

Both backends (Prometheus queries, direct scrapes) reduce what they read to `VersionReading`, so the
engine gets the same `Observations` from either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from canaryflow.kernel.analysis.observations import ArmObservations, Histogram, Observations
from canaryflow.kernel.contracts import metrics as names

LATENCY_METRIC = names.REQUEST_DURATION
REQUESTS_METRIC = names.counter_sample(names.REQUESTS)
GPU_MEMORY_METRIC = names.GPU_MEMORY
SHADOW_METRIC = names.SHADOW_DISTANCE


def is_error_code(code: str) -> bool:
    """A version's own failures are 5xx; 4xx are the client's bad input."""
    return code.startswith("5")


@dataclass
class VersionReading:
    """Counters as exported (cumulative since the server started)."""

    latency_buckets: dict[float, float] = field(default_factory=dict)  # le (finite) -> count
    latency_count: float = 0.0
    requests_by_code: dict[str, float] = field(default_factory=dict)
    gpu_memory_bytes: float | None = None
    shadow_buckets: dict[float, float] = field(default_factory=dict)
    shadow_count: float = 0.0

    @property
    def requests(self) -> float:
        return sum(self.requests_by_code.values())

    @property
    def errors(self) -> float:
        return sum(v for code, v in self.requests_by_code.items() if is_error_code(code))


def _histogram(buckets: dict[float, float], count: float) -> Histogram | None:
    finite = sorted(b for b in buckets if b != float("inf"))
    if not finite:
        return None
    counts = [round(buckets[b]) for b in finite]
    for i in range(1, len(counts)):
        counts[i] = max(counts[i], counts[i - 1])
    return Histogram(bounds=finite, counts=counts, total=max(round(count), counts[-1]))


def _delta(now: float, start: float) -> float:
    """A counter's increase; a reset (server restarted) counts from zero."""
    return now - start if now >= start else now


def arm_between(start: VersionReading | None, now: VersionReading) -> ArmObservations:
    start = start or VersionReading()
    latency_now = _histogram(now.latency_buckets, now.latency_count)
    latency_start = _histogram(start.latency_buckets, start.latency_count)
    if latency_now is not None and latency_start is not None and latency_start.bounds != latency_now.bounds:
        latency_start = None
    latency = latency_now.since(latency_start) if latency_now is not None else None
    requests = round(_delta(now.requests, start.requests))
    errors = min(round(_delta(now.errors, start.errors)), requests)
    return ArmObservations(
        requests=requests, errors=errors, latency_s=latency, gpu_memory_bytes=now.gpu_memory_bytes
    )


def observations_between(
    elapsed_s: float,
    baseline: tuple[VersionReading | None, VersionReading],
    canary: tuple[VersionReading | None, VersionReading],
) -> Observations:
    shadow_now = _histogram(canary[1].shadow_buckets, canary[1].shadow_count)
    shadow_start = _histogram(canary[0].shadow_buckets, canary[0].shadow_count) if canary[0] else None
    if shadow_now is not None and shadow_start is not None and shadow_start.bounds != shadow_now.bounds:
        shadow_start = None
    shadow = shadow_now.since(shadow_start) if shadow_now is not None else None
    return Observations(
        elapsed_s=max(elapsed_s, 0.0),
        baseline=arm_between(*baseline),
        canary=arm_between(*canary),
        shadow_distance=shadow if shadow is not None and shadow.total > 0 else None,
    )
