"""The kernel's drift statistics: calibrated false-alarm rates on no drift, detection of shifts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from canaryflow.kernel.drift_statistics import (
    DriftInputError,
    Window,
    calibrate,
    evaluate,
    ks_distance,
    weighted_chi2_quantile,
)
from policies.drift_policy import DriftPolicy, parse_drift_policy

from .synthetic import Traffic


def policy(**fields) -> DriftPolicy:
    return DriftPolicy.model_validate(fields)


def test_monthly_budget_is_split_over_looks_and_checks():
    hourly = DriftPolicy(false_alarms_per_month=0.5)
    assert hourly.looks_per_month == pytest.approx(720)
    assert hourly.alpha_per_check == pytest.approx(0.5 / 720 / 4)
    every_minute = DriftPolicy(window_s=3600, every_s=60, false_alarms_per_month=0.5,
                               latency={"enabled": False})  # fmt: skip
    assert every_minute.alpha_per_check == pytest.approx(0.5 / 43_200 / 3)


@pytest.mark.parametrize("alpha", [1e-2, 1e-4, 1e-7])
def test_null_quantile_matches_chi2_for_equal_weights(alpha):
    assert weighted_chi2_quantile(np.ones(10), alpha) == pytest.approx(stats.chi2.isf(alpha, 10), rel=0.002)


def test_null_quantile_matches_simulation_for_unequal_weights():
    lam = np.random.default_rng(0).exponential(1.0, 40) ** 2
    draws = (np.random.default_rng(1).standard_normal((400_000, 40)) ** 2) @ lam
    for alpha in (1e-2, 1e-3):
        assert weighted_chi2_quantile(lam, alpha) == pytest.approx(np.quantile(draws, 1 - alpha), rel=0.02)


def test_embedding_null_is_calibrated():
    """At a per-look alpha of 5%, the embedding check alarms on about 5% of same-distribution windows."""
    p = policy(
        false_alarms_per_month=0.05 * 720,
        centroid={"enabled": False},
        tokens={"enabled": False},
        latency={"enabled": False},
    )
    assert p.alpha_per_check == pytest.approx(0.05)
    traffic = Traffic(seed=1)
    reference = calibrate(p, traffic.window(3000))
    alarms = [evaluate(reference, traffic.window(200)).drift for _ in range(300)]
    assert 0.02 <= np.mean(alarms) <= 0.09  # binomial(300, 5%): 2.4 sd below, 3.2 above


def test_a_month_of_hourly_windows_without_drift_raises_at_most_a_few_alarms():
    """Default budget (0.5 a month): 720 hourly looks at unchanged traffic. The latency check's bounds
    are the rollout analysis's confidence sequences (tested with it); bench/monitor.py runs all three."""
    traffic = Traffic(seed=2)
    reference = calibrate(policy(latency={"enabled": False}), traffic.window(3000))
    alarms = sum(evaluate(reference, traffic.window(150)).drift for _ in range(720))
    assert alarms <= 2  # expected 0.5; P(>2) is about 1.4% for a Poisson(0.5)


@pytest.mark.parametrize(
    ("shift", "check"),
    [
        ({"new_topic": 0.3}, "embedding_mmd"),
        ({"tokens": 24.0}, "tokens_ks"),
        ({"latency_ms": 14.0}, "latency_p95"),
    ],
)
def test_each_shift_is_detected_by_its_check(shift, check):
    traffic = Traffic(seed=3)
    reference = calibrate(policy(), traffic.window(2000))
    verdict = evaluate(reference, traffic.window(200, **shift))
    fired = {c.name for c in verdict.checks if c.drift}
    assert verdict.drift and check in fired
    for c in verdict.checks:
        assert c.drift == (c.statistic is not None and c.threshold is not None and c.statistic > c.threshold)


def test_a_small_window_decides_nothing():
    traffic = Traffic(seed=4)
    reference = calibrate(policy(min_samples=50), traffic.window(500))
    verdict = evaluate(reference, traffic.window(30, new_topic=1.0))
    assert not verdict.drift
    assert all(c.statistic is None and "30 records" in c.note for c in verdict.checks)


def test_bad_inputs_name_the_field():
    traffic = Traffic(seed=5)
    with pytest.raises(DriftInputError, match="reference: 100 records"):
        calibrate(policy(), traffic.window(100))
    reference = calibrate(policy(), traffic.window(500))
    x, tok, lat = traffic.arrays(100)
    with pytest.raises(DriftInputError, match="embedding: 31 values"):
        evaluate(reference, Window(x[:, :31], tok, lat))


def test_ks_distance_handles_ties():
    a = np.sort(np.array([1.0, 1, 2, 2, 3]))
    assert ks_distance(a, np.array([1.0, 1, 2, 2, 3])) == 0.0
    assert ks_distance(a, np.array([3.0, 3, 3])) == pytest.approx(0.8)


def test_policy_errors_name_the_field():
    with pytest.raises(ValueError, match="window_s: Input should be greater than 0"):
        parse_drift_policy({"window_s": 0}, "p.yaml")
    with pytest.raises(ValueError, match="max_samples: below min_samples"):
        parse_drift_policy({"min_samples": 100, "max_samples": 50}, "p.yaml")
