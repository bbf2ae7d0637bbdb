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
from numpy.typing import NDArray

from canaryflow.kernel.analysis.series import ArmSeries, FloatArray, IntArray, ObservationSeries

PAIRING_MIN_REQUESTS = 20  # both arms together, between two looks, to place that interval's median
GEOMETRIC_SPREAD = 0.05  # log-ratios of consecutive bounds within 5% of each other: geometric buckets


def pair_by_time(series: ObservationSeries, known: ObservationSeries | None = None) -> ObservationSeries:
    """`series` with `paired_counts` on both arms (cumulative, like `latency_counts`), or unchanged
    where there is no latency histogram (or it is paired already).

    `known`: the series' first looks as this function paired them before (a live step's kept looks,
    `incremental.py`): only the intervals after them are shifted, and the cumulative counts go on from
    theirs. The numbers are those of pairing the whole series again: counts are whole numbers, so
    their sums are exact in any order, and an interval's shift depends only on the intervals up to
    it. A step's cost per look so stays the same however long it has run."""
    if series.per_metric:
        own = known.per_metric if known is not None else {}
        series = replace(
            series, per_metric={k: pair_by_time(v, own.get(k)) for k, v in series.per_metric.items()}
        )
    c, b = series.canary, series.baseline
    if series.latency_bounds is None or c.latency_counts is None or b.latency_counts is None:
        return series
    if c.paired_counts is not None and b.paired_counts is not None:
        return series
    if not is_geometric(series.latency_bounds):
        return series
    assert c.latency_totals is not None and b.latency_totals is not None
    before = _paired_rows(known, len(series))
    start = 0 if before is None else before[0].shape[0]
    # The intervals whose buckets are needed: the new ones, the first with a median placed, and the
    # last placed before the new ones (what an unplaced new interval's shift falls back on).
    total = np.diff(c.latency_totals, prepend=0.0) + np.diff(b.latency_totals, prepend=0.0)
    placed = total >= PAIRING_MIN_REQUESTS
    earlier = np.flatnonzero(placed[:start])
    rows = np.unique(np.concatenate([earlier[:1], earlier[-1:], np.flatnonzero(placed)[:1]]))
    rows = np.concatenate([rows[rows < start], np.arange(start, len(series))])
    per_c, per_b = _per_bucket(c, rows), _per_bucket(b, rows)
    shift = interval_shifts(per_c + per_b, rows, placed, start)
    new = rows >= start
    return replace(
        series,
        canary=_with_paired(c, _shifted(per_c[new], shift, None if before is None else before[0])),
        baseline=_with_paired(b, _shifted(per_b[new], shift, None if before is None else before[1])),
    )


def _paired_rows(known: ObservationSeries | None, looks: int) -> tuple[FloatArray, FloatArray] | None:
    """Both arms' paired counts of the looks paired before (None: none were)."""
    if known is None or known.canary.paired_counts is None or known.baseline.paired_counts is None:
        return None
    if len(known) > looks:
        raise ValueError(f"known: {len(known)} looks paired before, more than the series' {looks}")
    return known.canary.paired_counts, known.baseline.paired_counts


def is_geometric(bounds: FloatArray) -> bool:
    """Consecutive bounds a constant ratio apart (to rounding): a shift by k buckets is one factor."""
    if bounds.size < 3:
        return False
    steps = np.diff(np.log(bounds))
    return bool(steps.min() > 0 and (steps.max() - steps.min()) <= GEOMETRIC_SPREAD * steps.mean())


def interval_shifts(union: FloatArray, rows: IntArray, placed: NDArray[np.bool_], start: int) -> IntArray:
    """Buckets to shift each interval from `start` on by: its union median's index minus the first
    median's. `union`: both arms' requests per bucket in the intervals `rows` (those from `start` on,
    and, before it, the first and the last whose median is placed); `placed`: every interval's."""
    n = union.sum(axis=1)
    below = np.cumsum(union, axis=1)
    median = np.argmax(below >= n[:, None] / 2.0, axis=1)
    looks = placed.size
    if not placed.any():
        return np.zeros(looks - start, dtype=np.intp)
    at = np.full(looks, -1, dtype=np.intp)  # row of `union` of each interval, where it has one
    at[rows] = np.arange(rows.size)
    # Forward-fill: an interval too sparse to place a median keeps the last one placed.
    last = np.maximum.accumulate(np.where(placed, np.arange(looks), -1))[start:]
    first = int(median[at[np.flatnonzero(placed)[0]]])
    level = np.where(last >= 0, median[at[np.maximum(last, 0)]], first)
    return np.asarray(level - first, dtype=np.intp)


def _per_bucket(arm: ArmSeries, rows: IntArray) -> FloatArray:
    """Requests per bucket (the last column: above the last bound) in the intervals ending at `rows`
    (each since the look before it), from the arm's cumulative counts."""
    assert arm.latency_counts is not None and arm.latency_totals is not None
    counts, totals = arm.latency_counts, arm.latency_totals
    previous = np.maximum(rows - 1, 0)
    first = (rows == 0)[:, None]  # the first interval starts from nothing
    now = _per_bound(counts[rows], totals[rows])
    return np.asarray(now - np.where(first, 0.0, _per_bound(counts[previous], totals[previous])), dtype=float)


def _per_bound(counts: FloatArray, totals: FloatArray) -> FloatArray:
    rows = counts.shape[0]
    return np.diff(np.concatenate([np.zeros((rows, 1)), counts, totals[:, None]], axis=1), axis=1)


def _shifted(per: FloatArray, shift: IntArray, before: FloatArray | None) -> FloatArray:
    """Cumulative counts (over bounds and looks) with interval i's buckets moved down by shift[i]
    (up where negative); beyond the first or last bound they stay at the edge, the overflow stays.
    `before`: the paired counts of the looks before these, which the sums go on from."""
    rows, width = per.shape
    overflow = width - 1
    target = np.clip(np.arange(overflow)[None, :] - shift[:, None], 0, overflow)
    target = np.concatenate([target, np.full((rows, 1), overflow)], axis=1)
    flat = (target + np.arange(rows)[:, None] * width).ravel()
    moved = np.bincount(flat, weights=per.ravel(), minlength=rows * width).reshape(rows, width)
    if before is None or before.shape[0] == 0:
        return np.asarray(np.cumsum(np.cumsum(moved, axis=0), axis=1)[:, :overflow], dtype=float)
    # The last paired look's counts per bucket (before summing over bounds), continued.
    carried = np.diff(before[-1], prepend=0.0)
    ahead = np.cumsum(carried + np.cumsum(moved[:, :overflow], axis=0), axis=1)
    return np.asarray(np.concatenate([before, ahead], axis=0), dtype=float)


def _with_paired(arm: ArmSeries, paired: FloatArray) -> ArmSeries:
    return replace(arm, paired_counts=paired)
