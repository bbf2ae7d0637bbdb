"""A gauge per version (one number per arm at each look, not a sample), compared with the tolerance
as it is: such a kind spends no error budget. `gpu_memory` is one; a new gauge kind names the
`ArmSeries` field it reads and needs no evaluator of its own."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from canaryflow.kernel.analysis.kinds.base import CheckSeries, Evaluator, Levels, MetricSpec, ratio
from canaryflow.kernel.analysis.series import ArmSeries, FloatArray, ObservationSeries


def gauge_evaluator(read: Callable[[ArmSeries], FloatArray | None]) -> Evaluator:
    """The evaluator of a gauge kind whose values `read` takes from an arm (None: not observed)."""

    def evaluate(metric: MetricSpec, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
        n = len(series)
        canary, baseline = read(series.canary), read(series.baseline)
        c = canary if canary is not None else np.full(n, np.nan)
        b = baseline if baseline is not None else np.full(n, np.nan)
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

    return evaluate
