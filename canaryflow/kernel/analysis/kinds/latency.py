"""Latency quantiles from the two arms' histogram buckets, compared relative to the baseline.

The buckets are whatever the producer exports (canaryflow's geometric 9.3% steps, vLLM's or Triton's
coarse hand-picked bounds, Istio's in milliseconds read as seconds): a quantile is only known to lie in
one bucket, so each check also reports the bucket bounds around both arms' estimates
(`canary_bucket_low` … `canary_bucket_high`, likewise `baseline_`), and the wording names them when
a bucket is wider than a policy's thresholds can resolve. Every latency-like kind (time to first
token, time per output token, end-to-end latency, output tokens per second) is judged here.
"""

from __future__ import annotations

import numpy as np

from canaryflow.kernel.analysis.kinds.base import (
    MISSING_ARM,
    Bounds4,
    CheckSeries,
    Levels,
    MetricKind,
    MetricSpec,
    compare,
    no_data,
)
from canaryflow.kernel.analysis.sequential import cdf_cs, quantile_cs, quantile_estimate
from canaryflow.kernel.analysis.series import FloatArray, ObservationSeries


def evaluate(metric: MetricSpec, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
    """One check per quantile. Where both arms carry `paired_counts` (the engine pairs concurrent arms
    by time, `paired.py`), the bounds and the relative estimate come from them: the canary against
    the baseline at the same moments. The quantiles reported (`canary`, `baseline`) stay the pooled ones."""
    return quantile_checks(metric, series, levels)


def quantile_checks(
    metric: MetricSpec, series: ObservationSeries, levels: Levels, reciprocal: bool = False
) -> list[CheckSeries]:
    """`reciprocal`: the quantity judged is 1 / the histogram's (tokens per second from seconds per
    token): its q-quantile is 1 / the histogram's (1 - q)-quantile, and its bounds swap ends."""
    bounds, c, b = series.latency_bounds, series.canary, series.baseline
    if bounds is None or c.latency_counts is None or b.latency_counts is None:
        empty = [no_data(metric, name, len(series)) for name in metric.checks]
        if (c.latency_counts is None) != (b.latency_counts is None):  # one arm exports the series
            for check in empty:
                check.stats[MISSING_ARM] = np.full(len(series), 1.0 if c.latency_counts is None else 2.0)
        return empty
    assert c.latency_totals is not None and b.latency_totals is not None
    paired = c.paired_counts is not None and b.paired_counts is not None
    compared: dict[str, tuple[FloatArray, FloatArray]] = {
        "c": (
            c.latency_counts if c.paired_counts is None or not paired else c.paired_counts,
            c.latency_totals,
        ),
        "b": (
            b.latency_counts if b.paired_counts is None or not paired else b.paired_counts,
            b.latency_totals,
        ),
    }
    # CDF bounds per arm and level, shared by all quantiles (equal levels computed once).
    cache: dict[tuple[str, float], tuple[FloatArray, FloatArray]] = {}
    for arm, (counts, totals) in compared.items():
        for a in set(levels.per_arm().values()):
            cache[arm, a] = cdf_cs(counts, totals, a, levels.prior_strength)
    has_data = (c.latency_totals > 0) & (b.latency_totals > 0)
    out: list[CheckSeries] = []
    for name, q in zip(metric.checks, metric.quantiles, strict=True):
        read_q = 1.0 - q if reciprocal else q
        by_level: dict[str, Bounds4] = {}
        estimates: dict[str, FloatArray] = {}
        for level, a in levels.per_arm().items():
            parts: list[FloatArray] = []
            for arm, (counts, totals) in compared.items():
                lo, hi, est = quantile_cs(bounds, counts, totals, read_q, a, cache[arm, a])
                parts += [_inverse(hi), _inverse(lo)] if reciprocal else [lo, hi]
                estimates[arm] = _inverse(est) if reciprocal else est
            by_level[level] = (parts[0], parts[1], parts[2], parts[3])
        check = compare(metric, "relative", name, has_data, by_level, estimates["c"], estimates["b"])
        pooled = {
            "canary": quantile_estimate(bounds, c.latency_counts, c.latency_totals, read_q),
            "baseline": quantile_estimate(bounds, b.latency_counts, b.latency_totals, read_q),
        }
        if paired:
            for arm, value in pooled.items():
                check.stats[arm] = _inverse(value) if reciprocal else value
            check.stats["paired"] = np.ones(len(series))
        for arm, value in pooled.items():
            low, high = _bucket_around(bounds, value)
            check.stats[f"{arm}_bucket_low"], check.stats[f"{arm}_bucket_high"] = (
                (_inverse(high), _inverse(low)) if reciprocal else (low, high)
            )
        out.append(check)
    return out


def _inverse(values: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore"):
        return np.asarray(np.where(np.isnan(values), np.nan, 1.0 / values), dtype=float)


def _bucket_around(bounds: FloatArray, values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The bucket a quantile estimate lies in: (previous bound or 0, its bound or +inf); NaN without data."""
    edges = np.concatenate([[0.0], bounds, [np.inf]])
    index = np.clip(np.searchsorted(bounds, np.nan_to_num(values, nan=0.0), side="left"), 0, len(bounds))
    low, high = edges[index], edges[index + 1]
    missing = np.isnan(values)
    return np.where(missing, np.nan, low), np.where(missing, np.nan, high)


def milliseconds(seconds: float) -> str:
    ms = seconds * 1000.0
    return f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


KIND = MetricKind(
    name="latency",
    comparison="relative",
    statistical=True,
    quantiles=True,
    evaluate=evaluate,
    unit=milliseconds,
    description="request latency quantiles (histogram buckets); tolerance relative to the baseline",
)
