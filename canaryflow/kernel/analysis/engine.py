"""From observations to a verdict: checks per metric, the error budget split, the guards.

Error budget. A step fails (rollback) if any check fails, so the false-rollback budget alpha is
split evenly over the policy's statistical checks and over its steps (Bonferroni: a same-as-baseline
canary is rolled back if any one of them errs). A rollout is promoted only if every check of every
step passes, so a canary at the alternative in some metric is promoted only if that metric's own
check errs: the false-promotion budget beta needs no split (an intersection-union test). A two-arm
check gives each arm's confidence sequence half of its share.

A check bounds "how much worse the canary is" (relative increase, or rate difference). It fails
when that is shown above 0 at the split false-rollback level (so an identical canary fails with
probability at most its share of `false_rollback`) and above `tolerance` at the level
`false_rollback_at_tolerance` (split over the steps: a canary exactly at the tolerance in one
metric fails at most that often). It passes when the upper bound at the promotion level is below
`alternative`. Failing wins if both hold. Shadow distance, a level with no "identical" state, fails
only when shown above its tolerance at the split false-rollback level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from canaryflow.kernel.analysis.sequential import binomial_cs, cdf_cs, quantile_cs, srm_log_evidence
from canaryflow.kernel.analysis.series import ArmSeries, FloatArray, ObservationSeries
from canaryflow.kernel.types import Check, CheckVerdict, Verdict
from policies.model import COMPARISON, STATISTICAL_KINDS, MetricPolicy, Policy

StepStatus = Literal["running", "pass", "fail", "inconclusive"]
RUNNING, PASS, FAIL, INCONCLUSIVE = 0, 1, 2, 3
STATUS_NAMES: dict[int, StepStatus] = {
    RUNNING: "running",
    PASS: "pass",
    FAIL: "fail",
    INCONCLUSIVE: "inconclusive",
}
DECISIONS = {PASS: "promote", FAIL: "rollback", INCONCLUSIVE: "inconclusive", RUNNING: "inconclusive"}


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

    def check_at(self, i: int) -> Check:
        verdict: CheckVerdict = "fail" if self.fails[i] else "pass" if self.passes[i] else "inconclusive"
        if self.kind == "sample_ratio" and self.has_data[i]:
            share, expected = float(self.stats["canary_share"][i]), float(self.stats["expected_share"][i])
            reason = (
                f"sample-ratio mismatch: the canary got {share:.1%} of requests, configured {expected:.0%}"
                if verdict == "fail"
                else f"canary got {share:.1%} of requests, consistent with {expected:.0%}"
            )
        elif not self.has_data[i]:
            reason = "no data" + ("" if self.required else " (optional metric, ignored)")
        elif verdict == "fail":
            reason = f"canary shown worse than the tolerance ({_amount(self.kind, self.tolerance)})"
        elif verdict == "pass":
            reason = (
                f"canary shown less than {_amount(self.kind, self.alternative)} worse"
                if self.alternative is not None
                else f"canary within the tolerance ({_amount(self.kind, self.tolerance)})"
            )
        else:
            reason = "not enough evidence yet"
        extra = {name: _json_number(values[i]) for name, values in self.stats.items()}
        return Check(metric=self.metric, verdict=verdict, reason=reason, kind=self.kind, **extra)


def _amount(kind: str, value: float) -> str:
    comparison = COMPARISON.get(kind)
    if comparison == "relative":
        return f"{value:+.0%}"
    if comparison == "difference":
        return f"{value * 100:+g} points"
    return f"{value:g}"


def _json_number(value: float) -> float | None:
    number = float(value)
    return round(number, 6) if np.isfinite(number) else None


@dataclass
class SeriesEvaluation:
    """The engine's answer at every evaluation time of a series."""

    elapsed_s: FloatArray
    status: NDArray[np.int8]
    checks: list[CheckSeries]
    srm: CheckSeries | None

    def first_decision(self) -> int | None:
        decided = np.flatnonzero(self.status != RUNNING)
        return int(decided[0]) if decided.size else None

    def status_at(self, i: int) -> StepStatus:
        return STATUS_NAMES[int(self.status[i])]

    def verdict_at(self, i: int, time_offset_s: float = 0.0) -> Verdict:
        code = int(self.status[i])
        checks = [c.check_at(i) for c in self.checks]
        if self.srm is not None:
            checks.append(self.srm.check_at(i))
        return Verdict(
            decision=DECISIONS[code],
            decided_at_s=None if code == RUNNING else float(self.elapsed_s[i]) + time_offset_s,
            checks=checks,
        )


def evaluate_series(
    policy: Policy, series: ObservationSeries, step_index: int = 0, canary_weight: float | None = None
) -> SeriesEvaluation:
    if not 0 <= step_index < len(policy.steps):
        raise ValueError(f"step_index: {step_index} outside the policy's {len(policy.steps)} steps")
    step = policy.steps[step_index]
    weight = float(step.weight if canary_weight is None else canary_weight)
    n_checks = max(policy.statistical_checks, 1)
    budget = policy.error_budget
    alpha = budget.false_rollback / len(policy.steps) / n_checks
    levels = Levels(
        same=alpha,
        tolerance=max(alpha, budget.false_rollback_at_tolerance / len(policy.steps)),
        promote=budget.false_promote,  # intersection-union: no split (module docstring)
    )
    checks: list[CheckSeries] = []
    for metric in policy.metrics:
        checks.extend(_metric_checks(metric, series, levels))

    elapsed = series.elapsed_s
    canary_n, baseline_n = series.canary.requests, series.baseline.requests
    srm = _srm_check(policy, series, weight)
    guard_ok = (
        (elapsed >= step.min_duration_s)
        & (canary_n >= max(step.min_samples, 1))
        & (baseline_n >= policy.min_baseline_samples)
    )
    any_fail = np.zeros(len(series), dtype=bool)
    all_pass = np.ones(len(series), dtype=bool)
    for check in checks:
        any_fail |= check.fails & check.has_data
        settled = check.passes & check.has_data
        all_pass &= settled if check.required else (settled | ~check.has_data)
    status = np.full(len(series), RUNNING, dtype=np.int8)
    status[elapsed >= policy.max_duration_s] = INCONCLUSIVE
    status[guard_ok & all_pass & ~any_fail] = PASS
    status[guard_ok & any_fail] = FAIL
    if srm is not None:
        status[srm.fails] = INCONCLUSIVE
    return SeriesEvaluation(elapsed_s=elapsed, status=status, checks=checks, srm=srm)


def _srm_check(policy: Policy, series: ObservationSeries, weight: float) -> CheckSeries | None:
    if not policy.sample_ratio.enabled or not 0 < weight < 100:
        return None
    canary_n, total = series.canary.requests, series.canary.requests + series.baseline.requests
    log_e = srm_log_evidence(canary_n, total, weight / 100.0)
    share = np.divide(canary_n, total, out=np.full_like(total, np.nan), where=total > 0)
    mismatch = log_e >= np.log(1.0 / policy.sample_ratio.alpha)
    return CheckSeries(
        metric="sample_ratio",
        kind="sample_ratio",
        required=False,
        has_data=total > 0,
        fails=mismatch,
        passes=~mismatch & (total > 0),
        stats={"canary_share": share, "expected_share": np.full_like(total, weight / 100.0), "log_e": log_e},
        tolerance=policy.sample_ratio.alpha,
    )


@dataclass(frozen=True)
class Levels:
    """Per-check error levels: shown worse than the baseline (same), than the tolerance, promote."""

    same: float
    tolerance: float
    promote: float

    def per_arm(self) -> dict[str, float]:
        """Each arm's confidence sequence gets half of a two-arm check's share."""
        return {"same": self.same / 2, "tolerance": self.tolerance / 2, "promote": self.promote / 2}


def _metric_checks(metric: MetricPolicy, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
    if metric.kind == "latency":
        return _latency_checks(metric, series, levels)
    if metric.kind == "error_rate":
        return [_error_rate_check(metric, series, levels)]
    if metric.kind == "shadow_distance":
        return _shadow_checks(metric, series, levels)
    return [_gpu_memory_check(metric, series)]


Bounds4 = tuple[FloatArray, FloatArray, FloatArray, FloatArray]  # canary lo, hi; baseline lo, hi


def _latency_checks(metric: MetricPolicy, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
    bounds, c, b = series.latency_bounds, series.canary, series.baseline
    if bounds is None or c.latency_counts is None or b.latency_counts is None:
        return [_no_data(metric, name, len(series)) for name in metric.checks]
    assert c.latency_totals is not None and b.latency_totals is not None
    arms = {"c": (c.latency_counts, c.latency_totals), "b": (b.latency_counts, b.latency_totals)}
    # CDF bounds per arm and level, shared by all quantiles (equal levels computed once).
    cache: dict[tuple[str, float], tuple[FloatArray, FloatArray]] = {}
    for arm, (counts, totals) in arms.items():
        for a in set(levels.per_arm().values()):
            cache[arm, a] = cdf_cs(counts, totals, a)
    has_data = (c.latency_totals > 0) & (b.latency_totals > 0)
    out: list[CheckSeries] = []
    for name, q in zip(metric.checks, metric.quantiles, strict=True):
        by_level: dict[str, Bounds4] = {}
        estimates: dict[str, FloatArray] = {}
        for level, a in levels.per_arm().items():
            parts: list[FloatArray] = []
            for arm, (counts, totals) in arms.items():
                lo, hi, est = quantile_cs(bounds, counts, totals, q, a, cache[arm, a])
                parts += [lo, hi]
                estimates[arm] = est
            by_level[level] = (parts[0], parts[1], parts[2], parts[3])
        out.append(_compare(metric, name, has_data, by_level, estimates["c"], estimates["b"]))
    return out


def _error_rate_check(metric: MetricPolicy, series: ObservationSeries, levels: Levels) -> CheckSeries:
    c, b = series.canary, series.baseline
    by_level: dict[str, Bounds4] = {}
    for level, a in levels.per_arm().items():
        c_lo, c_hi = binomial_cs(c.errors, c.requests, a)
        b_lo, b_hi = binomial_cs(b.errors, b.requests, a)
        by_level[level] = (c_lo, c_hi, b_lo, b_hi)
    has_data = (c.requests > 0) & (b.requests > 0)
    return _compare(metric, metric.name, has_data, by_level, _rate(c), _rate(b))


def _rate(arm: ArmSeries) -> FloatArray:
    return np.divide(arm.errors, arm.requests, out=np.full_like(arm.requests, np.nan), where=arm.requests > 0)


def _worse_bounds(metric: MetricPolicy, bounds: Bounds4) -> tuple[FloatArray, FloatArray]:
    """Lower and upper bounds on how much worse the canary is (relative, or a difference)."""
    c_lo, c_hi, b_lo, b_hi = bounds
    relative = COMPARISON[metric.kind] == "relative"
    lower_better = metric.direction == "lower_is_better"
    with np.errstate(divide="ignore", invalid="ignore"):
        if relative and lower_better:
            lower, upper = _ratio(c_lo, b_hi) - 1, _ratio(c_hi, b_lo) - 1
        elif relative:
            lower, upper = 1 - _ratio(c_hi, b_lo), 1 - _ratio(c_lo, b_hi)
        elif lower_better:
            lower, upper = c_lo - b_hi, c_hi - b_lo
        else:
            lower, upper = b_lo - c_hi, b_hi - c_lo
    return np.nan_to_num(lower, nan=-np.inf), np.nan_to_num(upper, nan=np.inf)


def _compare(
    metric: MetricPolicy,
    name: str,
    has_data: NDArray[np.bool_],
    by_level: dict[str, Bounds4],
    canary_estimate: FloatArray,
    baseline_estimate: FloatArray,
) -> CheckSeries:
    """Fail: shown worse than the baseline (at the `same` level) and than the tolerance (at the
    `tolerance` level). Pass: shown better than the alternative (at the `promote` level)."""
    worse_than_baseline, _ = _worse_bounds(metric, by_level["same"])
    worse_lower, _ = _worse_bounds(metric, by_level["tolerance"])
    _, worse_upper = _worse_bounds(metric, by_level["promote"])
    with np.errstate(divide="ignore", invalid="ignore"):
        if COMPARISON[metric.kind] == "relative":
            ratio = _ratio(canary_estimate, baseline_estimate)
            estimate = ratio - 1 if metric.direction == "lower_is_better" else 1 - ratio
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
    )


def _ratio(a: FloatArray, b: FloatArray) -> FloatArray:
    """a / b with 0/0 = 1 (both at the lowest bucket), x/0 = inf, x/inf = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.divide(a, b)
    return np.where((a == 0) & (b == 0), 1.0, ratio)


def _shadow_checks(metric: MetricPolicy, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
    """A level, not a comparison: no "same as baseline" state, so the strict rollback level applies."""
    alpha, beta = levels.same, levels.promote
    out: list[CheckSeries] = []
    for name, q in zip(metric.checks, metric.quantiles, strict=True):
        if series.shadow_bounds is None or series.shadow_counts is None or series.shadow_totals is None:
            out.append(_no_data(metric, name, len(series)))
            continue
        lo_r, _, est = quantile_cs(series.shadow_bounds, series.shadow_counts, series.shadow_totals, q, alpha)
        _, hi_p, _ = quantile_cs(series.shadow_bounds, series.shadow_counts, series.shadow_totals, q, beta)
        has_data = series.shadow_totals > 0
        alternative = float(metric.alternative if metric.alternative is not None else metric.tolerance)
        out.append(
            CheckSeries(
                metric=name,
                kind=metric.kind,
                required=metric.required,
                has_data=has_data,
                fails=has_data & (lo_r > metric.tolerance),
                passes=has_data & (hi_p < alternative),
                stats={"canary": est, "worse_estimate": est, "worse_lower": lo_r, "worse_upper": hi_p},
                tolerance=metric.tolerance,
                alternative=metric.alternative,
            )
        )
    return out


def _gpu_memory_check(metric: MetricPolicy, series: ObservationSeries) -> CheckSeries:
    """A gauge, not a sample: read as is, compared with the tolerance; it spends no error budget."""
    assert metric.kind not in STATISTICAL_KINDS
    n = len(series)
    c = series.canary.gpu_memory if series.canary.gpu_memory is not None else np.full(n, np.nan)
    b = series.baseline.gpu_memory if series.baseline.gpu_memory is not None else np.full(n, np.nan)
    has_data = np.isfinite(c) & np.isfinite(b)
    increase = np.where(has_data, _ratio(c, b) - 1, np.nan)
    if metric.direction == "higher_is_better":
        increase = -increase
    worse = np.nan_to_num(increase, nan=0.0) > metric.tolerance
    return CheckSeries(
        metric=metric.name,
        kind=metric.kind,
        required=metric.required,
        has_data=has_data,
        fails=has_data & worse,
        passes=has_data & ~worse,
        stats={"canary": c, "baseline": b, "worse_estimate": increase},
        tolerance=metric.tolerance,
    )


def _no_data(metric: MetricPolicy, name: str, n: int) -> CheckSeries:
    none = np.zeros(n, dtype=bool)
    return CheckSeries(
        metric=name, kind=metric.kind, required=metric.required, has_data=none, fails=none, passes=none,
        tolerance=metric.tolerance, alternative=metric.alternative,
    )  # fmt: skip
