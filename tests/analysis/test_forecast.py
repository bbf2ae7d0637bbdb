"""The forecast (`forecast.py`): each check's time to a decision from the traffic rate, the advice
when a step cannot decide within `max_duration_s`, a policy that can, and the tuned prior weight."""

from __future__ import annotations

import numpy as np
import pytest

from canaryflow.kernel.analysis.forecast import (
    forecast,
    recommend,
    reference_cdf,
    tuned_prior_strength,
)
from canaryflow.kernel.analysis.observations import DEFAULT_LATENCY_BUCKETS_S
from canaryflow.kernel.analysis.sequential import PRIOR_STRENGTH, binomial_cs
from policies import load_policy

DEFAULT = load_policy("default")
LOW_TRAFFIC = load_policy("low-traffic")


def test_thin_traffic_gets_the_advice_sentence_and_a_policy_that_fits() -> None:
    thin = forecast(DEFAULT, 2.0)
    first = thin.steps[0]
    assert not first.fits and not thin.fits
    slowest = first.slowest
    assert slowest is not None and slowest.metric == "error_rate"
    assert slowest.seconds is not None and slowest.seconds > DEFAULT.max_duration_s
    assert thin.advice == [
        "step 1 (10%): at 0.2 canary requests/s the error-rate check needs about 2,400 s; "
        "`max_duration_s` is 1,800 s: consider `policies/low-traffic.yaml` or a larger weight"
    ]
    better = recommend(DEFAULT, 2.0, {"low-traffic": LOW_TRAFFIC})
    assert better is not None and better.name == "low-traffic" and better.forecast.fits
    assert better.label == "low-traffic"  # a few hundred requests: the shipped prior weight


def test_more_traffic_decides_sooner_and_needs_no_advice() -> None:
    found = [forecast(DEFAULT, rate).steps[0].seconds for rate in (5.0, 20.0, 200.0)]
    times = [t for t in found if t is not None]
    assert len(times) == len(found)
    assert times[0] > times[1] > times[2] >= DEFAULT.steps[0].warmup_s + DEFAULT.steps[0].min_duration_s
    busy = forecast(DEFAULT, 200.0)
    assert busy.fits and busy.advice == [] and recommend(DEFAULT, 200.0, {"low-traffic": LOW_TRAFFIC}) is None
    assert busy.to_dict()["fits"] is True


def test_a_long_tail_at_the_p95_slows_that_check_and_raises_the_tuned_prior() -> None:
    bounds = np.asarray(DEFAULT_LATENCY_BUCKETS_S)
    body = reference_cdf(bounds, sigma=0.9)
    tail = np.mean([reference_cdf(bounds, sigma=0.9, median_s=0.02 * k) for k in (5, 10, 15, 20)], axis=0)
    heavy = 0.95 * body + 0.05 * tail
    steady = forecast(DEFAULT, 30.0).steps[0]
    slow = forecast(DEFAULT, 30.0, latency_cdf=heavy).steps[0]
    p95 = {c.metric: c.requests for c in slow.checks}["latency_p95"]
    p95_steady = {c.metric: c.requests for c in steady.checks}["latency_p95"]
    assert p95 is not None and p95_steady is not None and p95 > 10 * p95_steady
    assert tuned_prior_strength(DEFAULT, 30.0) == PRIOR_STRENGTH
    assert tuned_prior_strength(LOW_TRAFFIC, 30.0, latency_cdf=heavy) > 5 * PRIOR_STRENGTH


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(ValueError, match="rate_rps"):
        forecast(DEFAULT, 0.0)
    with pytest.raises(ValueError, match="error_rate"):
        forecast(DEFAULT, 10.0, error_rate=1.5)
    with pytest.raises(ValueError, match="latency_cdf"):
        forecast(DEFAULT, 10.0, latency_cdf=[0.5, 1.0])


def test_a_tuned_prior_keeps_the_bounds_time_uniform() -> None:
    """A prior weight fixed before the data (the forecast's tuning) still gives a confidence
    sequence: over every look, the truth is missed in no more than alpha of the runs."""
    rng = np.random.default_rng(11)
    runs, length, f, alpha = 200, 20000, 0.95, 0.05
    outcomes = rng.random((runs, length)) < f
    looks = np.arange(100, length + 1, 100)
    successes = np.cumsum(outcomes, axis=1)[:, looks - 1]
    lo, hi = binomial_cs(successes, np.broadcast_to(looks, successes.shape), alpha, prior_strength=2000.0)
    assert ((lo > f) | (hi < f)).any(axis=1).mean() <= alpha
    # and near the sample size it is tuned for, it is narrower than the shipped weight's
    lo_100, hi_100 = binomial_cs(0.95 * 18000, 18000, alpha)
    lo_2k, hi_2k = binomial_cs(0.95 * 18000, 18000, alpha, prior_strength=2000.0)
    assert hi_2k - lo_2k < 0.95 * (hi_100 - lo_100)


def test_a_live_step_forecasts_from_the_traffic_it_has_seen() -> None:
    """From the readings since the warm-up: the rate of both arms, the baseline's errors and latency
    histogram (here a thin 2 requests/s), for the step being judged only."""
    from canaryflow.kernel.analysis.forecast import forecast_from_looks
    from canaryflow.kernel.analysis.observations import ArmObservations, Histogram, Observations

    rng = np.random.default_rng(3)

    def arm(n: int) -> ArmObservations:
        latency = Histogram.from_values(rng.lognormal(np.log(0.02), 0.35, n), DEFAULT_LATENCY_BUCKETS_S)
        return ArmObservations(requests=n, errors=n // 200, latency_s=latency)

    looks = [Observations(elapsed_s=300.0, baseline=arm(540), canary=arm(60))]
    live = forecast_from_looks(DEFAULT, looks, 0)
    assert live is not None and live.rate_rps == 2.0 and [s.step for s in live.steps] == [0]
    assert not live.fits and "consider `policies/low-traffic.yaml`" in live.advice[0]
    assert forecast_from_looks(DEFAULT, [], 0) is None


@pytest.mark.parametrize("policy", ["default", "low-traffic", "llm"])
@pytest.mark.parametrize("error_rate", [0.0, 0.3])
def test_rows_judged_a_few_at_a_time_give_the_first_passing_row_of_all(
    policy: str, error_rate: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forecast judges the grid's rows in order, a few at a time, and stops once every check has
    passed: each check's first passing row is the one judging every row at once finds (a high error
    rate leaves the error-rate check passing late or never, so later rows are judged too); a
    refinement asking about one check gets that check's row."""
    from canaryflow.kernel.analysis import forecast as module

    chosen = load_policy(policy)
    bounds = np.asarray(DEFAULT_LATENCY_BUCKETS_S, dtype=float)
    histogram = (bounds, reference_cdf(bounds))
    grid = module._GRID
    for weight in (1.0, 10.0, 50.0):
        with monkeypatch.context() as at_once:
            at_once.setattr(module, "_ROWS_AT_ONCE", len(grid))
            every_row = module._passing(chosen, weight, error_rate, histogram, grid)
        few = module._passing(chosen, weight, error_rate, histogram, grid)
        assert few == every_row and list(few) == list(every_row)
        assert any(at is not None and at >= module._ROWS_AT_ONCE for at in every_row.values())
        for check, at in every_row.items():
            assert module._passing(chosen, weight, error_rate, histogram, grid, only=check) == {check: at}
