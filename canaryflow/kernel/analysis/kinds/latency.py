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
    bounds_read,
    compare,
    no_data,
)
from canaryflow.kernel.analysis.sequential import cdf_cs_for_quantiles, quantile_cs, quantile_estimate
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
    # Both arms (canary first) at every level in one array (levels, arms, looks, bounds): the CDF
    # bounds once for all quantiles (equal levels once), each quantile's bounds in one call. The
    # numbers are those of separate calls per arm and level; numpy's cost is per call on arrays
    # this small, and a live look judges one look. Of each arm and level only the CDF bound behind
    # the quantile bound `compare` reads is searched (a quantile's lower bound is read off the CDF's
    # upper one; a reciprocal swaps them again), and of its ~100 bucket bounds only those around
    # the quantiles to the end (`cdf_cs_for_quantiles`).
    pooled_counts = np.stack([c.latency_counts, b.latency_counts])
    paired = c.paired_counts is not None and b.paired_counts is not None
    counts = pooled_counts
    if c.paired_counts is not None and b.paired_counts is not None:
        counts = np.stack([c.paired_counts, b.paired_counts])
    totals = np.stack([c.latency_totals, b.latency_totals])
    per_arm = levels.per_arm()
    alphas = sorted(set(per_arm.values()))
    level_of = {level: alphas.index(a) for level, a in per_arm.items()}
    shape = np.asarray(alphas)[:, None, None, None]
    from_cdf: dict[str, int] = {"lower": 0, "upper": 1} if reciprocal else {"lower": 1, "upper": 0}
    wanted = np.zeros((len(alphas), 2, 2, 1, 1), dtype=bool)  # alpha, arm, CDF (lower, upper) side
    for level, sides in bounds_read(metric.direction).items():
        for arm_index, side in enumerate(sides):
            wanted[level_of[level], arm_index, from_cdf[side]] = True
    read_qs = [1.0 - q if reciprocal else q for q in metric.quantiles]
    cdf_bounds = cdf_cs_for_quantiles(
        counts,
        totals,
        shape,
        read_qs,
        levels.prior_strength,
        lower_wanted=wanted[:, :, 0],
        upper_wanted=wanted[:, :, 1],
    )
    has_data = (c.latency_totals > 0) & (b.latency_totals > 0)
    out: list[CheckSeries] = []
    for name, read_q in zip(metric.checks, read_qs, strict=True):
        lo, hi, raw = quantile_cs(bounds, counts, totals, read_q, shape, cdf_bounds)
        pooled = quantile_estimate(bounds, pooled_counts, totals, read_q) if paired else raw
        est = _inverse(raw) if reciprocal else raw
        if reciprocal:
            lo, hi = _inverse(hi), _inverse(lo)
        by_level: dict[str, Bounds4] = {
            level: (lo[i, 0], hi[i, 0], lo[i, 1], hi[i, 1]) for level, i in level_of.items()
        }
        check = compare(metric, "relative", name, has_data, by_level, est[0], est[1])
        if paired:
            for i, arm in enumerate(("canary", "baseline")):
                check.stats[arm] = _inverse(pooled[i]) if reciprocal else pooled[i]
            check.stats["paired"] = np.ones(len(series))
        low, high = _bucket_around(bounds, pooled)
        for i, arm in enumerate(("canary", "baseline")):
            check.stats[f"{arm}_bucket_low"], check.stats[f"{arm}_bucket_high"] = (
                (_inverse(high[i]), _inverse(low[i])) if reciprocal else (low[i], high[i])
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
