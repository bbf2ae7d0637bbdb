"""Latency quantiles from the two arms' histogram buckets, compared relative to the baseline."""

from __future__ import annotations

import numpy as np

from canaryflow.kernel.analysis.kinds.base import (
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
    bounds, c, b = series.latency_bounds, series.canary, series.baseline
    if bounds is None or c.latency_counts is None or b.latency_counts is None:
        return [no_data(metric, name, len(series)) for name in metric.checks]
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
        by_level: dict[str, Bounds4] = {}
        estimates: dict[str, FloatArray] = {}
        for level, a in levels.per_arm().items():
            parts: list[FloatArray] = []
            for arm, (counts, totals) in compared.items():
                lo, hi, est = quantile_cs(bounds, counts, totals, q, a, cache[arm, a])
                parts += [lo, hi]
                estimates[arm] = est
            by_level[level] = (parts[0], parts[1], parts[2], parts[3])
        check = compare(metric, "relative", name, has_data, by_level, estimates["c"], estimates["b"])
        if paired:
            check.stats["canary"] = quantile_estimate(bounds, c.latency_counts, c.latency_totals, q)
            check.stats["baseline"] = quantile_estimate(bounds, b.latency_counts, b.latency_totals, q)
            check.stats["paired"] = np.ones(len(series))
        out.append(check)
    return out


def _milliseconds(seconds: float) -> str:
    ms = seconds * 1000.0
    return f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


KIND = MetricKind(
    name="latency",
    comparison="relative",
    statistical=True,
    quantiles=True,
    evaluate=evaluate,
    unit=_milliseconds,
    description="request latency quantiles (histogram buckets); tolerance relative to the baseline",
)
