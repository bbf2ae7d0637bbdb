"""The engine's decisions on known cases, its guards, and its false-rollback rate on A/A runs."""

from __future__ import annotations

import numpy as np
import pytest

from canaryflow.kernel.analysis import (
    DEFAULT_LATENCY_BUCKETS_S,
    ArmObservations,
    Histogram,
    Observations,
    analyze,
)
from canaryflow.kernel.analysis.replay import RequestLog, replay_log
from policies import load_policy

POLICY = load_policy("default")


def _arm(rng: np.random.Generator, n: int, median_s: float, error_rate: float, memory: float | None = None):
    latency = rng.lognormal(np.log(median_s), 0.35, n)
    return ArmObservations(
        requests=n,
        errors=int(rng.binomial(n, error_rate)),
        latency_s=Histogram.from_values(latency, DEFAULT_LATENCY_BUCKETS_S),
        gpu_memory_bytes=memory,
    )


def _obs(
    canary_scale: float = 1.0, canary_errors: float = 0.005, n_canary: int = 2000, elapsed: float = 600, **kw
):
    rng = np.random.default_rng(11)
    return Observations(
        elapsed_s=elapsed,
        baseline=_arm(rng, n_canary * 9, 0.02, 0.005, kw.get("baseline_memory")),
        canary=_arm(rng, n_canary, 0.02 * canary_scale, canary_errors, kw.get("canary_memory")),
    )


def _check(result, metric: str):
    return next(c for c in result.verdict.checks if c.metric == metric)


def test_same_version_passes_the_step() -> None:
    result = analyze(POLICY, _obs())
    assert result.status == "pass" and result.verdict.decision == "promote"
    assert result.verdict.decided_at_s == 600
    assert _check(result, "gpu_memory").verdict == "inconclusive"  # optional, absent: ignored


def test_slower_canary_is_rolled_back_at_median_and_p95() -> None:
    result = analyze(POLICY, _obs(canary_scale=1.5))
    assert result.status == "fail" and result.verdict.decision == "rollback"
    assert _check(result, "latency_p50").verdict == "fail"
    assert _check(result, "latency_p95").verdict == "fail"
    assert _check(result, "latency_p50").model_extra["worse_lower"] > 0.10


def test_error_rate_regression_is_rolled_back() -> None:
    result = analyze(POLICY, _obs(canary_errors=0.05))
    assert result.status == "fail" and _check(result, "error_rate").verdict == "fail"


def test_gpu_memory_above_tolerance_fails() -> None:
    result = analyze(POLICY, _obs(baseline_memory=1.0e9, canary_memory=1.4e9))
    assert result.status == "fail" and _check(result, "gpu_memory").verdict == "fail"


def test_no_data_and_too_little_data_never_promote() -> None:
    empty = Observations(elapsed_s=1000, baseline=ArmObservations(), canary=ArmObservations())
    assert analyze(POLICY, empty).status == "running"
    late = Observations(elapsed_s=POLICY.max_duration_s, baseline=ArmObservations(), canary=ArmObservations())
    assert analyze(POLICY, late).status == "inconclusive"
    few = _obs(n_canary=50)
    assert analyze(POLICY, few).status == "running"
    early = _obs(elapsed=10)
    assert analyze(POLICY, early).status == "running"


def test_max_duration_without_decision_is_inconclusive() -> None:
    undecided = _obs(canary_scale=1.17, n_canary=300, elapsed=POLICY.max_duration_s)
    result = analyze(POLICY, undecided)
    assert result.status == "inconclusive" and result.verdict.decision == "inconclusive"


def test_sample_ratio_mismatch_is_inconclusive() -> None:
    obs = _obs()
    # The canary got 10% of the traffic, but the step is configured for 50%.
    result = analyze(POLICY, obs, step_index=1)
    assert result.status == "inconclusive"
    assert _check(result, "sample_ratio").verdict == "fail"


def test_observations_reject_more_errors_than_requests() -> None:
    with pytest.raises(ValueError, match="errors"):
        ArmObservations(requests=3, errors=4)


def _aa_log(seed: int, rps: float = 20.0, duration: float = 900.0) -> RequestLog:
    rng = np.random.default_rng(seed)
    n = rng.poisson(rps * duration)
    t = np.sort(rng.uniform(0, duration, n))
    canary = rng.random(n) < 0.10
    return RequestLog(
        t=t, canary=canary, latency_s=rng.lognormal(np.log(0.02), 0.35, n) / 1, ok=rng.random(n) >= 0.005
    )


def test_aa_runs_stay_within_the_false_rollback_budget() -> None:
    decisions = [replay_log(POLICY, _aa_log(seed)).decision for seed in range(60)]
    assert decisions.count("rollback") / len(decisions) <= POLICY.error_budget.false_rollback
    assert decisions.count("promote") >= 50  # and it does decide, well before the deadline


def test_shadow_distance_is_judged_when_present() -> None:
    rng = np.random.default_rng(5)
    from canaryflow.kernel.analysis import DEFAULT_SHADOW_BUCKETS

    base = _obs()
    close = base.model_copy(
        update={
            "shadow_distance": Histogram.from_values(rng.uniform(0.001, 0.05, 3000), DEFAULT_SHADOW_BUCKETS)
        }
    )
    far = base.model_copy(
        update={"shadow_distance": Histogram.from_values(rng.uniform(0.4, 0.8, 3000), DEFAULT_SHADOW_BUCKETS)}
    )
    assert analyze(POLICY, close).status == "pass"
    result = analyze(POLICY, far)
    assert result.status == "fail" and _check(result, "shadow_distance_p50").verdict == "fail"


def test_histogram_deltas_survive_a_counter_reset() -> None:
    bounds = [0.01, 0.1]
    before = Histogram(bounds=bounds, counts=[5, 8], total=9)
    after = Histogram(bounds=bounds, counts=[7, 12], total=15)
    assert after.since(before) == Histogram(bounds=bounds, counts=[2, 4], total=6)
    restarted = Histogram(bounds=bounds, counts=[1, 2], total=2)
    assert restarted.since(before) == restarted
    with pytest.raises(ValueError, match="cumulative"):
        Histogram(bounds=bounds, counts=[3, 2], total=3)


def test_a_canary_shown_worse_but_within_tolerance_is_not_rolled_back() -> None:
    result = analyze(POLICY, _obs(canary_scale=1.05, n_canary=20_000))
    p50 = _check(result, "latency_p50")
    assert p50.model_extra["worse_than_baseline_lower"] > 0  # shown slower than the baseline...
    assert p50.model_extra["worse_lower"] < 0.10  # ...but not beyond the tolerance
    assert result.status == "pass"


def test_strict_budget_needs_proof_beyond_the_tolerance() -> None:
    strict = POLICY.model_copy(
        update={"error_budget": POLICY.error_budget.model_copy(update={"false_rollback_at_tolerance": 0.01})}
    )
    obs = _obs(canary_scale=1.25, n_canary=150, elapsed=120)
    lenient_result, strict_result = analyze(POLICY, obs), analyze(strict, obs)
    lenient_p50 = _check(lenient_result, "latency_p50").model_extra["worse_lower"]
    strict_p50 = _check(strict_result, "latency_p50").model_extra["worse_lower"]
    assert strict_p50 < lenient_p50
