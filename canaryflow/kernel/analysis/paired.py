"""Latencies paired by time: each arm's requests measured against the load of the moment they were served.

Both arms serve at the same moments, so a burst (or any load swing) slows both alike. Pooled over
time, such moments make each arm's latency distribution a mixture: a burst of 3x every two minutes
puts the p95 in the gap between the modes, where the distribution is flat and the quantile's
bounds are wide (at 2 canary requests/s a p95 needs two to three times as many requests as on
steady traffic). That slowdown is common to both arms and says nothing about the canary.

So, between two consecutive looks, both arms' histogram increments are shifted by the same number
of buckets: the distance of that interval's median, read on the union of both arms, from the
median of the first such interval. The buckets are geometric (a constant ratio per bucket), so a
shift by k buckets divides every latency of the interval by the same factor: a slowdown common to
both arms is removed, and any ratio between the arms is kept exactly (the canary 25% slower at
every moment stays 25% slower after the shift). The shift is a symmetric function of the union, so
for a canary identical to its baseline both shifted arms are random splits of the same requests,
with the same distribution, as before: the false-rollback rates stand. What changes is the
quantity compared: the canary's quantile against the baseline's *at the same moments*, with the
common slowdown removed, rather than of the two pooled mixtures.

An interval with fewer than `PAIRING_MIN_REQUESTS` requests in both arms together (low traffic)
reuses the last shift known (none before the first such interval): too few requests place no median.
A watch's baseline is a record, not concurrent: nothing to pair it with (the engine does not call this).

Only geometric buckets are shifted (canaryflow's own, TEI's): a producer's hand-picked bounds (vLLM's,
Triton's, Istio's) are not a constant ratio apart, so a shift there would not divide every latency by
one factor, and such histograms are compared pooled. A metric's own series (`per_metric`) is paired
on its own histogram.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from canaryflow.kernel.analysis.series import ArmSeries, FloatArray, IntArray, ObservationSeries

PAIRING_MIN_REQUESTS = 20  # both arms together, between two looks, to place that interval's median
GEOMETRIC_SPREAD = 0.05  # log-ratios of consecutive bounds within 5% of each other: geometric buckets


def pair_by_time(series: ObservationSeries) -> ObservationSeries:
    """`series` with `paired_counts` on both arms (cumulative, like `latency_counts`), or unchanged
    where there is no latency histogram."""
    if series.per_metric:
        series = replace(series, per_metric={k: pair_by_time(v) for k, v in series.per_metric.items()})
    c, b = series.canary, series.baseline
    if series.latency_bounds is None or c.latency_counts is None or b.latency_counts is None:
        return series
    if not is_geometric(series.latency_bounds):
        return series
    assert c.latency_totals is not None and b.latency_totals is not None
    per_c = _per_bucket(c.latency_counts, c.latency_totals)
    per_b = _per_bucket(b.latency_counts, b.latency_totals)
    shift = interval_shifts(per_c + per_b)
    return replace(
        series,
        canary=_with_paired(c, _shifted(per_c, shift)),
        baseline=_with_paired(b, _shifted(per_b, shift)),
    )


def is_geometric(bounds: FloatArray) -> bool:
    """Consecutive bounds a constant ratio apart (to rounding): a shift by k buckets is one factor."""
    if bounds.size < 3:
        return False
    steps = np.diff(np.log(bounds))
    return bool(steps.min() > 0 and (steps.max() - steps.min()) <= GEOMETRIC_SPREAD * steps.mean())


def interval_shifts(union: FloatArray) -> IntArray:
    """Buckets to shift each interval by: its union median's index minus the first median's."""
    n = union.sum(axis=1)
    below = np.cumsum(union, axis=1)
    median = np.argmax(below >= n[:, None] / 2.0, axis=1)
    placed = n >= PAIRING_MIN_REQUESTS
    if not placed.any():
        return np.zeros(union.shape[0], dtype=np.intp)
    # Forward-fill: an interval too sparse to place a median keeps the last one placed.
    last = np.maximum.accumulate(np.where(placed, np.arange(placed.size), -1))
    first = int(median[np.flatnonzero(placed)[0]])
    level = np.where(last >= 0, median[np.maximum(last, 0)], first)
    return np.asarray(level - first, dtype=np.intp)


def _per_bucket(counts: FloatArray, totals: FloatArray) -> FloatArray:
    """Requests per interval and bucket (the last column: above the last bound) from cumulative counts."""
    rows = counts.shape[0]
    cumulative = np.concatenate([np.zeros((rows, 1)), counts, totals[:, None]], axis=1)
    per_bound = np.diff(cumulative, axis=1)
    return np.diff(per_bound, axis=0, prepend=np.zeros((1, per_bound.shape[1])))


def _shifted(per: FloatArray, shift: IntArray) -> FloatArray:
    """Cumulative counts (over bounds and looks) with interval i's buckets moved down by shift[i]
    (up where negative); beyond the first or last bound they stay at the edge, the overflow stays."""
    rows, width = per.shape
    overflow = width - 1
    target = np.clip(np.arange(overflow)[None, :] - shift[:, None], 0, overflow)
    target = np.concatenate([target, np.full((rows, 1), overflow)], axis=1)
    flat = (target + np.arange(rows)[:, None] * width).ravel()
    moved = np.bincount(flat, weights=per.ravel(), minlength=rows * width).reshape(rows, width)
    return np.asarray(np.cumsum(np.cumsum(moved, axis=0), axis=1)[:, :overflow], dtype=float)


def _with_paired(arm: ArmSeries, paired: FloatArray) -> ArmSeries:
    return replace(arm, paired_counts=paired)
