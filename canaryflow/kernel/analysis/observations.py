"""What the analysis engine sees: per-arm counts accumulated since the traffic step started.

Everything is cumulative since the step start, so the engine is a pure function of (policy,
observations at time t) and a restarted controller decides the same way. Latencies come as
Prometheus-style cumulative histogram buckets, because that is what a Prometheus gives; raw samples
are bucketed with `Histogram.from_values`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from canaryflow.kernel.contracts.buckets import LATENCY_BUCKETS_MS, LATENCY_BUCKETS_S, SHADOW_BUCKETS

# The bucket bounds of the inference server's contract (canaryflow.kernel.contracts.buckets).
DEFAULT_LATENCY_BUCKETS_MS: tuple[float, ...] = LATENCY_BUCKETS_MS
DEFAULT_LATENCY_BUCKETS_S: tuple[float, ...] = LATENCY_BUCKETS_S
DEFAULT_SHADOW_BUCKETS: tuple[float, ...] = SHADOW_BUCKETS


class Histogram(BaseModel):
    """A cumulative histogram: `counts[i]` observations were <= `bounds[i]`; `total` includes +Inf."""

    model_config = ConfigDict(frozen=True)

    bounds: list[float] = Field(min_length=1)
    counts: list[int]
    total: int = Field(ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Histogram:
        if len(self.counts) != len(self.bounds):
            raise ValueError(f"counts: {len(self.counts)} values for {len(self.bounds)} bounds")
        if any(b <= a for a, b in zip(self.bounds, self.bounds[1:], strict=False)) or self.bounds[0] <= 0:
            raise ValueError("bounds: must be positive and strictly increasing")
        if any(c < 0 for c in self.counts) or any(
            b < a for a, b in zip(self.counts, self.counts[1:], strict=False)
        ):
            raise ValueError("counts: must be non-negative and non-decreasing (cumulative)")
        if self.counts[-1] > self.total:
            raise ValueError(f"total: {self.total} is below the last bucket's count {self.counts[-1]}")
        return self

    @classmethod
    def empty(cls, bounds: Sequence[float]) -> Histogram:
        return cls(bounds=list(bounds), counts=[0] * len(bounds), total=0)

    @classmethod
    def from_values(
        cls, values: Sequence[float] | np.ndarray, bounds: Sequence[float] | np.ndarray
    ) -> Histogram:
        """Bucket raw samples the way a Prometheus histogram does (`le`: value <= bound)."""
        sorted_values = np.sort(np.asarray(values, dtype=float))
        counts = np.searchsorted(sorted_values, np.asarray(bounds, dtype=float), side="right")
        return cls(bounds=list(bounds), counts=[int(c) for c in counts], total=len(sorted_values))

    def since(self, earlier: Histogram | None) -> Histogram:
        """The observations added after `earlier`; a counter reset (restart) keeps the newer counts."""
        if earlier is None:
            return self
        if earlier.bounds != self.bounds:
            raise ValueError("bounds changed between the two readings; cannot subtract histograms")
        delta = [a - b for a, b in zip(self.counts, earlier.counts, strict=True)]
        total = self.total - earlier.total
        if total < 0 or any(d < 0 for d in delta):
            return self
        # Clamp rounding of float-valued Prometheus samples into a valid cumulative shape.
        for i in range(1, len(delta)):
            delta[i] = max(delta[i], delta[i - 1])
        return Histogram(bounds=self.bounds, counts=delta, total=max(total, delta[-1]))


class ArmObservations(BaseModel):
    """One version's traffic since the step started (requests, 5xx errors, latency, memory)."""

    model_config = ConfigDict(frozen=True)

    requests: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    latency_s: Histogram | None = None
    gpu_memory_bytes: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _errors_within_requests(self) -> ArmObservations:
        if self.errors > self.requests:
            raise ValueError(f"errors: {self.errors} errors out of {self.requests} requests")
        return self


class MetricArms(BaseModel):
    """Both arms of one policy metric whose numbers come from their own series (a metric provider's
    signal other than the step's request latency and counts): its histogram in `latency_s`, or its
    events in `requests` / `errors`, or its gauge in `gpu_memory_bytes`."""

    model_config = ConfigDict(frozen=True)

    baseline: ArmObservations = Field(default_factory=ArmObservations)
    canary: ArmObservations = Field(default_factory=ArmObservations)


class Observations(BaseModel):
    """Both arms at one moment, `elapsed_s` after the step started; the input of `analyze`.

    `baseline` and `canary` are the step's requests (what the guards count) and, unless a metric reads
    its own series, what the metrics are judged on; `per_metric` holds, by policy metric name, the
    series a metric provider gave that metric (`canaryflow.kernel.contracts.providers`)."""

    model_config = ConfigDict(frozen=True)

    elapsed_s: float = Field(ge=0)
    baseline: ArmObservations
    canary: ArmObservations
    shadow_distance: Histogram | None = Field(
        default=None, description="cosine distance canary vs baseline on the same (shadowed) inputs"
    )
    per_metric: dict[str, MetricArms] = Field(default_factory=dict)
