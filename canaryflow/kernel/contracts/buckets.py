"""Histogram bucket bounds shared by the inference server (which exports them) and the analysis
engine (which reads quantiles from them).

A quantile read from a Prometheus histogram is only known to lie inside one bucket, so a canary
comparison can resolve ratios no finer than adjacent bounds. The policy's thresholds are +10%
(roll back) and +25% (promote), so bounds grow by 10^(1/26) ≈ 9.3% per bucket (close to the
resolution of Prometheus native histograms at schema 3), with every power of ten a bound: two such
buckets fit under the +25% alternative.
"""

from __future__ import annotations


def _geometric(start: float, stop: float, per_decade: int, digits: int = 4) -> tuple[float, ...]:
    bounds: list[float] = []
    k = 0
    while True:
        value = float(f"{start * 10 ** (k / per_decade):.{digits}g}")
        if value >= stop:
            bounds.append(stop)
            return tuple(bounds)
        bounds.append(value)
        k += 1


# Request latency, seconds: 1 ms ... 10 s.
LATENCY_BUCKETS_S: tuple[float, ...] = _geometric(0.001, 10.0, per_decade=26)
LATENCY_BUCKETS_MS: tuple[float, ...] = tuple(round(b * 1000.0, 6) for b in LATENCY_BUCKETS_S)
# Shadow cosine distance between canary and baseline embeddings: 0.0001 ... 2.
SHADOW_BUCKETS: tuple[float, ...] = _geometric(0.0001, 2.0, per_decade=13)
