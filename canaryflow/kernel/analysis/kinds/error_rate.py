"""The share of requests that failed (HTTP 5xx), compared as a difference of rates."""

from __future__ import annotations

import numpy as np

from canaryflow.kernel.analysis.kinds.base import (
    Bounds4,
    CheckSeries,
    Levels,
    MetricKind,
    MetricSpec,
    compare,
)
from canaryflow.kernel.analysis.sequential import binomial_cs
from canaryflow.kernel.analysis.series import ArmSeries, FloatArray, ObservationSeries


def evaluate(metric: MetricSpec, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
    c, b = series.canary, series.baseline
    by_level: dict[str, Bounds4] = {}
    for level, a in levels.per_arm().items():
        c_lo, c_hi = binomial_cs(c.errors, c.requests, a, levels.prior_strength)
        b_lo, b_hi = binomial_cs(b.errors, b.requests, a, levels.prior_strength)
        by_level[level] = (c_lo, c_hi, b_lo, b_hi)
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
