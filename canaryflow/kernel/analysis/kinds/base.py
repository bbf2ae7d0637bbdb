"""What every metric kind shares: the shape of a check over time, the error levels, the comparison.

A kind's evaluator turns one metric of the policy and a series of observations into `CheckSeries`
(one per check it produces: one per quantile for distributions). It sees the metric through the
`MetricSpec` protocol, so this package needs nothing from `policies` (which consults the table of
kinds to validate a policy: the dependency points one way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from canaryflow.kernel.analysis.sequential import PRIOR_STRENGTH
from canaryflow.kernel.analysis.series import FloatArray, ObservationSeries

Comparison = Literal["relative", "difference", "level"]
Bounds4 = tuple[FloatArray, FloatArray, FloatArray, FloatArray]  # canary lo, hi; baseline lo, hi


class MetricSpec(Protocol):
    """The fields of a policy's metric that an evaluator reads (`policies.model.MetricPolicy`)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def direction(self) -> str: ...
    @property
    def quantiles(self) -> list[float]: ...
    @property
    def tolerance(self) -> float: ...
    @property
    def alternative(self) -> float | None: ...
    @property
    def required(self) -> bool: ...
    @property
    def checks(self) -> list[str]: ...


@dataclass(frozen=True)
class Levels:
    """Per-check error levels: shown worse than the baseline (same), than the tolerance, promote."""

    same: float
    tolerance: float
    promote: float
    # The confidence sequences' mixture prior weight (`sequential.PRIOR_STRENGTH` unless the policy
    # sets `prior_strength`): fixed before the data, as anytime validity needs.
    prior_strength: float = PRIOR_STRENGTH

    def per_arm(self) -> dict[str, float]:
        """Each arm's confidence sequence gets half of a two-arm check's share."""
        return {"same": self.same / 2, "tolerance": self.tolerance / 2, "promote": self.promote / 2}

    @classmethod
    def uniform(cls, level: float, prior_strength: float = PRIOR_STRENGTH) -> Levels:
        return cls(same=level, tolerance=level, promote=level, prior_strength=prior_strength)


@dataclass
class CheckSeries:
    """One check at every evaluation time: verdict codes and the statistics behind them."""

    metric: str
    kind: str
    required: bool
    has_data: NDArray[np.bool_]
    fails: NDArray[np.bool_]
    passes: NDArray[np.bool_]
    stats: dict[str, FloatArray] = field(default_factory=dict)
    tolerance: float = 0.0
    alternative: float | None = None
    direction: str = "lower_is_better"


Evaluator = Callable[[MetricSpec, ObservationSeries, Levels], list[CheckSeries]]


@dataclass(frozen=True)
class MetricKind:
    """One entry of the kind table: how a kind's thresholds read and the function that judges it.

    `statistical` kinds are judged by confidence sequences and spend error budget; the others (a
    gauge) are read as they are. `quantiles` kinds produce one check per policy quantile. `unit`
    formats one of the kind's raw values for a person (`12.5 ms`, `0.42%`). `signal` is what a metric
    provider supplies for it (`canaryflow.kernel.contracts.providers`: a histogram, a rate or a gauge);
    `direction`, where set, is the only direction the kind reads in (a policy stating the other is
    refused).
    """

    name: str
    comparison: Comparison
    statistical: bool
    quantiles: bool
    evaluate: Evaluator
    unit: Callable[[float], str]
    description: str
    signal: str = "latency"
    direction: str | None = None


def ratio(a: FloatArray, b: FloatArray) -> FloatArray:
    """a / b with 0/0 = 1 (both at the lowest bucket), x/0 = inf, x/inf = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.divide(a, b)
    return np.where((a == 0) & (b == 0), 1.0, value)


def worse_bounds(comparison: Comparison, direction: str, bounds: Bounds4) -> tuple[FloatArray, FloatArray]:
    """Lower and upper bounds on how much worse the canary is (relative, or a difference)."""
    c_lo, c_hi, b_lo, b_hi = bounds
    relative = comparison == "relative"
    lower_better = direction == "lower_is_better"
    with np.errstate(divide="ignore", invalid="ignore"):
        if relative and lower_better:
            lower, upper = ratio(c_lo, b_hi) - 1, ratio(c_hi, b_lo) - 1
        elif relative:
            lower, upper = 1 - ratio(c_hi, b_lo), 1 - ratio(c_lo, b_hi)
        elif lower_better:
            lower, upper = c_lo - b_hi, c_hi - b_lo
        else:
            lower, upper = b_lo - c_hi, b_hi - c_lo
    return np.nan_to_num(lower, nan=-np.inf), np.nan_to_num(upper, nan=np.inf)


Side = Literal["lower", "upper"]


def bounds_read(direction: str) -> dict[str, tuple[Side, Side]]:
    """The one bound of each arm (canary's, baseline's) that `compare` reads at each level: at `same`
    and `tolerance` those the worse-lower bound is made of, at `promote` the worse-upper's (see
    `worse_bounds`: the canary's lower against the baseline's upper when lower is better). Each side
    of a confidence sequence is a search of its own, so an evaluator computes only these."""
    lower_is_better = direction == "lower_is_better"
    worse_lower: tuple[Side, Side] = ("lower", "upper") if lower_is_better else ("upper", "lower")
    worse_upper: tuple[Side, Side] = (worse_lower[1], worse_lower[0])
    return {"same": worse_lower, "tolerance": worse_lower, "promote": worse_upper}


def compare(
    metric: MetricSpec,
    comparison: Comparison,
    name: str,
    has_data: NDArray[np.bool_],
    by_level: dict[str, Bounds4],
    canary_estimate: FloatArray,
    baseline_estimate: FloatArray,
) -> CheckSeries:
    """A two-arm check. Fail: shown worse than the baseline (at the `same` level) and than the
    tolerance (at the `tolerance` level). Pass: shown better than the alternative (`promote` level)."""
    worse_than_baseline, _ = worse_bounds(comparison, metric.direction, by_level["same"])
    worse_lower, _ = worse_bounds(comparison, metric.direction, by_level["tolerance"])
    _, worse_upper = worse_bounds(comparison, metric.direction, by_level["promote"])
    with np.errstate(divide="ignore", invalid="ignore"):
        if comparison == "relative":
            r = ratio(canary_estimate, baseline_estimate)
            estimate = r - 1 if metric.direction == "lower_is_better" else 1 - r
        else:
            diff = canary_estimate - baseline_estimate
            estimate = diff if metric.direction == "lower_is_better" else -diff
    alternative = float(metric.alternative if metric.alternative is not None else metric.tolerance)
    return CheckSeries(
        metric=name,
        kind=metric.kind,
        required=metric.required,
        has_data=has_data,
        fails=has_data & (worse_than_baseline > 0) & (worse_lower > metric.tolerance),
        passes=has_data & (worse_upper < alternative),
        stats={
            "canary": canary_estimate,
            "baseline": baseline_estimate,
            "worse_estimate": estimate,
            "worse_than_baseline_lower": worse_than_baseline,
            "worse_lower": worse_lower,
            "worse_upper": worse_upper,
        },
        tolerance=metric.tolerance,
        alternative=metric.alternative,
        direction=metric.direction,
    )


# A check's stat naming the arm whose series is missing altogether (1: canary, 2: baseline).
MISSING_ARM = "missing_arm"


def no_data(metric: MetricSpec, name: str, n: int) -> CheckSeries:
    none = np.zeros(n, dtype=bool)
    return CheckSeries(
        metric=name, kind=metric.kind, required=metric.required, has_data=none, fails=none, passes=none,
        tolerance=metric.tolerance, alternative=metric.alternative, direction=metric.direction,
    )  # fmt: skip
