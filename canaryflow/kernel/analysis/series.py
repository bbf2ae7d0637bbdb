"""Observations as arrays over evaluation times: the form the engine computes on.

A live tick is a series of length one; a replayed log is one series of all its evaluation times, so
a whole file is judged in a few vectorised calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from canaryflow.kernel.analysis.observations import ArmObservations, Histogram, Observations

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ArmSeries:
    """One arm, cumulative since the step start, at each evaluation time (axis 0)."""

    requests: FloatArray
    errors: FloatArray
    latency_counts: FloatArray | None = None  # (T, bounds) cumulative per bucket bound
    latency_totals: FloatArray | None = None  # (T,) observations in the latency histogram
    gpu_memory: FloatArray | None = None  # (T,), NaN where unknown
    # (T, bounds) like latency_counts, each interval's buckets shifted by the common slowdown of the
    # moment (`paired.pair_by_time`); None where the arms are not compared at the same moments.
    paired_counts: FloatArray | None = None


@dataclass(frozen=True)
class ObservationSeries:
    elapsed_s: FloatArray
    baseline: ArmSeries
    canary: ArmSeries
    latency_bounds: FloatArray | None = None
    shadow_bounds: FloatArray | None = None
    shadow_counts: FloatArray | None = None
    shadow_totals: FloatArray | None = None
    # A metric's own series (from a metric provider), by policy metric name: the arms' requests and
    # errors, or latency histogram, are that metric's; the engine judges the metric on it.
    per_metric: dict[str, ObservationSeries] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.elapsed_s.shape[0])

    def for_metric(self, name: str, own_series: bool) -> ObservationSeries | None:
        """What metric `name` is judged on: its own series where a provider gave one, else (for a kind
        the step's requests serve: latency, error rate, GPU memory, shadow distance) this series; None
        for a kind that needs its own series and got none (no data)."""
        if name in self.per_metric:
            return self.per_metric[name]
        return None if own_series else self

    @classmethod
    def from_observations(cls, observations: Sequence[Observations]) -> ObservationSeries:
        if not observations:
            raise ValueError("observations: at least one reading is needed")
        latency_bounds = _common_bounds(
            [o.baseline.latency_s for o in observations] + [o.canary.latency_s for o in observations],
            "latency_s",
        )
        shadow_bounds = _common_bounds([o.shadow_distance for o in observations], "shadow_distance")
        shadow_counts, shadow_totals = _stack_histograms([o.shadow_distance for o in observations])
        names = sorted({name for o in observations for name in o.per_metric})
        per_metric = {
            name: cls.from_observations(
                [
                    Observations(
                        elapsed_s=o.elapsed_s,
                        baseline=o.per_metric[name].baseline if name in o.per_metric else ArmObservations(),
                        canary=o.per_metric[name].canary if name in o.per_metric else ArmObservations(),
                    )
                    for o in observations
                ]
            )
            for name in names
        }
        return cls(
            elapsed_s=np.array([o.elapsed_s for o in observations], dtype=float),
            baseline=_arm_series([o.baseline for o in observations]),
            canary=_arm_series([o.canary for o in observations]),
            latency_bounds=latency_bounds,
            shadow_bounds=shadow_bounds,
            shadow_counts=shadow_counts if shadow_bounds is not None else None,
            shadow_totals=shadow_totals if shadow_bounds is not None else None,
            per_metric=per_metric,
        )


def _common_bounds(histograms: Sequence[Histogram | None], field: str) -> FloatArray | None:
    present = [h for h in histograms if h is not None]
    if not present:
        return None
    first = present[0].bounds
    if any(h.bounds != first for h in present[1:]):
        raise ValueError(f"{field}: both arms and all readings must use the same bucket bounds")
    return np.asarray(first, dtype=float)


def _stack_histograms(histograms: Sequence[Histogram | None]) -> tuple[FloatArray | None, FloatArray | None]:
    present = [h for h in histograms if h is not None]
    if not present:
        return None, None
    width = len(present[0].bounds)
    counts = np.array([h.counts if h is not None else [0] * width for h in histograms], dtype=float)
    totals = np.array([h.total if h is not None else 0 for h in histograms], dtype=float)
    return counts, totals


def _arm_series(arms: Sequence[ArmObservations]) -> ArmSeries:
    counts, totals = _stack_histograms([a.latency_s for a in arms])
    memory = np.array(
        [np.nan if a.gpu_memory_bytes is None else a.gpu_memory_bytes for a in arms], dtype=float
    )
    return ArmSeries(
        requests=np.array([a.requests for a in arms], dtype=float),
        errors=np.array([a.errors for a in arms], dtype=float),
        latency_counts=counts,
        latency_totals=totals,
        gpu_memory=memory,
    )


IntArray = NDArray[np.intp]


def _rows(values: FloatArray | None, index: IntArray) -> FloatArray | None:
    """values[index] with index -1 meaning "nothing yet" (zeros). Only the rows asked for are read:
    a live look asks for one or two of a long step's."""
    if values is None:
        return None
    if values.shape[0] == 0:
        return np.zeros((index.shape[0], *values.shape[1:]))
    out = np.asarray(values[np.maximum(index, 0)], dtype=float)
    out[index < 0] = 0.0
    return out


def _diff(values: FloatArray | None, start: IntArray, end: IntArray) -> FloatArray | None:
    later, earlier = _rows(values, end), _rows(values, start)
    if later is None or earlier is None:
        return None
    return np.asarray(later - earlier, dtype=float)


def _arm_at(arm: ArmSeries, end: IntArray) -> ArmSeries:
    return _arm_between(arm, np.full(end.shape, -1, dtype=np.intp), end)


def _arm_between(arm: ArmSeries, start: IntArray, end: IntArray) -> ArmSeries:
    memory = None if arm.gpu_memory is None else np.asarray(arm.gpu_memory[end], dtype=float)
    requests = _diff(arm.requests, start, end)
    errors = _diff(arm.errors, start, end)
    assert requests is not None and errors is not None
    return ArmSeries(
        requests=requests,
        errors=errors,
        latency_counts=_diff(arm.latency_counts, start, end),
        latency_totals=_diff(arm.latency_totals, start, end),
        gpu_memory=memory,
        paired_counts=_diff(arm.paired_counts, start, end),
    )


def between(
    series: ObservationSeries, start: IntArray, end: IntArray, recorded_baseline: bool = False
) -> ObservationSeries:
    """Row i holds what happened between look `start[i]` and look `end[i]` (-1: the series' origin).

    How the engine leaves out a warm-up and cuts windows: counts are cumulative, so any interval is
    a difference of two rows (a gauge, GPU memory, is read at the end). A `recorded_baseline` (the
    previous champion's record, in a watch) is not cut: every row holds all of it.
    """
    return ObservationSeries(
        elapsed_s=np.asarray(series.elapsed_s[end], dtype=float),
        baseline=_arm_at(series.baseline, end)
        if recorded_baseline
        else _arm_between(series.baseline, start, end),
        canary=_arm_between(series.canary, start, end),
        latency_bounds=series.latency_bounds,
        shadow_bounds=series.shadow_bounds,
        shadow_counts=_diff(series.shadow_counts, start, end),
        shadow_totals=_diff(series.shadow_totals, start, end),
        per_metric={
            name: between(own, start, end, recorded_baseline) for name, own in series.per_metric.items()
        },
    )


def last_look_at_or_before(elapsed: FloatArray, times: FloatArray) -> IntArray:
    """Index of the last look at or before each time (-1 where none)."""
    return np.asarray(np.searchsorted(elapsed, times + 1e-9, side="right") - 1, dtype=np.intp)


def concat(first: ObservationSeries, then: ObservationSeries) -> ObservationSeries:
    """The looks of `first` followed by those of `then`: what `from_observations` builds from both
    lists of readings at once (a histogram an arm lacks in one part counts zero there, a metric's
    own series one part lacks is empty there), so a live step appends its new looks to the ones it
    kept instead of rebuilding every look on each tick."""
    for name, a, b in (
        ("latency_s", first.latency_bounds, then.latency_bounds),
        ("shadow_distance", first.shadow_bounds, then.shadow_bounds),
    ):
        if a is not None and b is not None and not np.array_equal(a, b):
            raise ValueError(f"{name}: both arms and all readings must use the same bucket bounds")
    shadow_bounds = first.shadow_bounds if first.shadow_bounds is not None else then.shadow_bounds
    shadow_width = 0 if shadow_bounds is None else shadow_bounds.size
    names = sorted({*first.per_metric, *then.per_metric})
    return ObservationSeries(
        elapsed_s=np.concatenate([first.elapsed_s, then.elapsed_s]),
        baseline=_concat_arms(first.baseline, then.baseline, len(first), len(then)),
        canary=_concat_arms(first.canary, then.canary, len(first), len(then)),
        latency_bounds=first.latency_bounds if first.latency_bounds is not None else then.latency_bounds,
        shadow_bounds=shadow_bounds,
        shadow_counts=_concat_rows(
            first.shadow_counts, then.shadow_counts, len(first), len(then), shadow_width
        ),
        shadow_totals=_concat_rows(first.shadow_totals, then.shadow_totals, len(first), len(then), None),
        per_metric={
            name: concat(
                first.per_metric.get(name) or _empty(first.elapsed_s),
                then.per_metric.get(name) or _empty(then.elapsed_s),
            )
            for name in names
        },
    )


def _empty(elapsed_s: FloatArray) -> ObservationSeries:
    """A metric's own series at looks that read none of it (`from_observations`' empty arms)."""
    return ObservationSeries.from_observations(
        [
            Observations(elapsed_s=float(t), baseline=ArmObservations(), canary=ArmObservations())
            for t in elapsed_s
        ]
    )


def _concat_rows(
    a: FloatArray | None, b: FloatArray | None, rows_a: int, rows_b: int, width: int | None
) -> FloatArray | None:
    """Rows of `a` then `b`; a part without the array holds zeros (`width` columns, None: a vector)."""
    if a is None and b is None:
        return None
    if a is None or b is None:
        present = a if a is not None else b
        assert present is not None
        shape = present.shape[1:] if width is None else (width,)
        a = np.zeros((rows_a, *shape)) if a is None else a
        b = np.zeros((rows_b, *shape)) if b is None else b
    return np.concatenate([a, b], axis=0)


def _concat_arms(a: ArmSeries, b: ArmSeries, rows_a: int, rows_b: int) -> ArmSeries:
    counts = a.latency_counts if a.latency_counts is not None else b.latency_counts
    width = None if counts is None else counts.shape[1]
    return ArmSeries(
        requests=np.concatenate([a.requests, b.requests]),
        errors=np.concatenate([a.errors, b.errors]),
        latency_counts=_concat_rows(a.latency_counts, b.latency_counts, rows_a, rows_b, width),
        latency_totals=_concat_rows(a.latency_totals, b.latency_totals, rows_a, rows_b, None),
        gpu_memory=_concat_rows(a.gpu_memory, b.gpu_memory, rows_a, rows_b, None),
    )
