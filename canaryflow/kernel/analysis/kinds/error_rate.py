"""The share of requests that failed (HTTP 5xx), compared as a difference of rates."""

from __future__ import annotations

import numpy as np

from canaryflow.kernel.analysis.kinds.base import (
    Bounds4,
    CheckSeries,
    Levels,
    MetricKind,
    MetricSpec,
    bounds_read,
    compare,
)
from canaryflow.kernel.analysis.sequential import binomial_cs
from canaryflow.kernel.analysis.series import ArmSeries, FloatArray, ObservationSeries


def evaluate(metric: MetricSpec, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
    c, b = series.canary, series.baseline
    # Every level and both arms in one call (a bisection's cost is per call, not per bound), and of
    # each only the bound `compare` reads (the other holds trivially: 0 or 1).
    per_arm = levels.per_arm()
    read = np.asarray([bounds_read(metric.direction)[level] for level in per_arm])[:, :, None]
    lower, upper = binomial_cs(
        np.stack([c.errors, b.errors]),
        np.stack([c.requests, b.requests]),
        np.asarray(list(per_arm.values()))[:, None, None],  # (levels, arms, looks)
        levels.prior_strength,
        lower_wanted=read == "lower",
        upper_wanted=read == "upper",
    )
    by_level: dict[str, Bounds4] = {
        level: (lower[i, 0], upper[i, 0], lower[i, 1], upper[i, 1]) for i, level in enumerate(per_arm)
    }
    has_data = (c.requests > 0) & (b.requests > 0)
    return [compare(metric, "difference", metric.name, has_data, by_level, _rate(c), _rate(b))]


def _rate(arm: ArmSeries) -> FloatArray:
    return np.divide(arm.errors, arm.requests, out=np.full_like(arm.requests, np.nan), where=arm.requests > 0)


KIND = MetricKind(
    name="error_rate",
    signal="requests",
    comparison="difference",
    statistical=True,
    quantiles=False,
    evaluate=evaluate,
    unit=lambda rate: f"{rate:.2%}",
    description="share of requests answered 5xx; tolerance a difference of rates (0.005 = +0.5 points)",
)
