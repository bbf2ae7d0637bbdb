"""GPU memory held by each version: a gauge read as it is (it spends no error budget)."""

from __future__ import annotations

import numpy as np

from canaryflow.kernel.analysis.kinds.base import CheckSeries, Levels, MetricKind, MetricSpec, ratio
from canaryflow.kernel.analysis.series import ObservationSeries


def evaluate(metric: MetricSpec, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
    """Compared with the tolerance directly: the gauge is one number per arm, not a sample."""
    n = len(series)
    c = series.canary.gpu_memory if series.canary.gpu_memory is not None else np.full(n, np.nan)
    b = series.baseline.gpu_memory if series.baseline.gpu_memory is not None else np.full(n, np.nan)
    has_data = np.isfinite(c) & np.isfinite(b)
    increase = np.where(has_data, ratio(c, b) - 1, np.nan)
    if metric.direction == "higher_is_better":
        increase = -increase
    worse = np.nan_to_num(increase, nan=0.0) > metric.tolerance
    check = CheckSeries(
        metric=metric.name,
        kind=metric.kind,
        required=metric.required,
        has_data=has_data,
        fails=has_data & worse,
        passes=has_data & ~worse,
        stats={"canary": c, "baseline": b, "worse_estimate": increase},
        tolerance=metric.tolerance,
        direction=metric.direction,
    )
    return [check]


KIND = MetricKind(
    name="gpu_memory",
    signal="gpu_memory",
    comparison="relative",
    statistical=False,
    quantiles=False,
    evaluate=evaluate,
    unit=lambda nbytes: f"{nbytes / 2**30:.2f} GiB",
    description="GPU memory gauge per version; tolerance relative to the baseline, no error budget",
)
