"""The confidence sequences: exact identities against scipy, coverage on simulated runs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from canaryflow.kernel.analysis import DEFAULT_LATENCY_BUCKETS_S, Histogram
from canaryflow.kernel.analysis.sequential import (
    PRIOR_STRENGTH,
    binomial_cs,
    log_mixture,
    quantile_cs,
    quantile_from_cdf,
    srm_log_evidence,
)


@pytest.mark.parametrize(("s", "n", "f"), [(0, 10, 0.1), (3, 50, 0.02), (120, 200, 0.5), (990, 1000, 0.95)])
def test_mixture_is_the_beta_binomial_to_binomial_likelihood_ratio(s: int, n: int, f: float) -> None:
    a, b = PRIOR_STRENGTH * f, PRIOR_STRENGTH * (1 - f)
    expected = stats.betabinom.logpmf(s, n, a, b) - stats.binom.logpmf(s, n, f)
    assert log_mixture(s, n, f) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_bounds_hold_the_observed_rate_and_no_data_is_uninformative() -> None:
    lo, hi = binomial_cs([0, 5, 50, 100], [0, 100, 100, 100], 0.01)
    assert (lo[0], hi[0]) == (0.0, 1.0)
    assert lo[1] < 0.05 < hi[1] and lo[2] < 0.5 < hi[2] and hi[3] == 1.0 and lo[1] > 0


@pytest.mark.parametrize(("s", "n"), [(5, 1000), (500, 1000), (40, 200)])
def test_time_uniform_bounds_are_wider_than_fixed_n_exact_bounds_but_not_wildly(s: int, n: int) -> None:
    lo, hi = binomial_cs(s, n, 0.05)
    exact = stats.binomtest(s, n).proportion_ci(confidence_level=0.95, method="exact")
    assert lo <= exact.low and hi >= exact.high
    assert (hi - lo) < 2.5 * (exact.high - exact.low)


def test_bounds_cover_the_truth_at_every_look_in_all_but_alpha_of_runs() -> None:
    rng = np.random.default_rng(7)
    runs, length, f, alpha = 300, 3000, 0.03, 0.05
    outcomes = rng.random((runs, length)) < f
    looks = np.arange(10, length + 1, 10)
    successes = np.cumsum(outcomes, axis=1)[:, looks - 1]
    lo, hi = binomial_cs(successes, np.broadcast_to(looks, successes.shape), alpha)
    ever_missed = ((lo > f) | (hi < f)).any(axis=1).mean()
    assert ever_missed <= alpha
    # A fixed-n interval checked at every look does miss far more often: peeking inflates errors.
    z = stats.norm.ppf(1 - alpha / 2)
    rate = successes / looks
    half = z * np.sqrt(np.maximum(rate * (1 - rate), 1e-12) / looks)
    assert ((rate - half > f) | (rate + half < f)).any(axis=1).mean() > 2 * alpha


def test_quantile_interpolation_matches_histogram_quantile() -> None:
    bounds = [0.1, 0.2, 0.4]
    cdf = np.array([0.2, 0.6, 0.9])
    assert quantile_from_cdf(bounds, cdf, 0.5) == pytest.approx(0.1 + 0.1 * (0.3 / 0.4))
    assert quantile_from_cdf(bounds, cdf, 0.1) == pytest.approx(0.05)
    assert quantile_from_cdf(bounds, cdf, 0.95) == np.inf


def test_quantile_bounds_cover_the_bucketed_target_and_order() -> None:
    rng = np.random.default_rng(3)
    bounds = np.asarray(DEFAULT_LATENCY_BUCKETS_S)
    population = rng.lognormal(np.log(0.02), 0.35, 2_000_000)
    true_cdf = np.asarray(Histogram.from_values(population, bounds).counts) / population.size
    misses = 0
    for seed in range(100):
        sample = np.random.default_rng(seed).lognormal(np.log(0.02), 0.35, 500)
        hist = Histogram.from_values(sample, bounds)
        for q in (0.5, 0.95):
            lo, hi, est = quantile_cs(bounds, hist.counts, hist.total, q, 0.05)
            target_q = float(quantile_from_cdf(bounds, true_cdf, q))
            assert lo <= est <= hi
            misses += not (lo <= target_q <= hi)
    assert misses <= 0.05 * 200


def test_srm_evidence_grows_only_under_a_mismatch() -> None:
    fair = srm_log_evidence(1000, 10_000, 0.10)
    skewed = srm_log_evidence(300, 10_000, 0.10)
    assert fair < np.log(1 / 0.001) < skewed


@pytest.mark.parametrize(
    ("s", "n", "f", "above"),
    [
        (4, 780, 0.02, False),
        (20, 800, 0.012, True),
        (390, 780, 0.45, True),
        (390, 780, 0.55, False),
        (0, 300, 0.02, False),
    ],
)
def test_one_sided_evidence_is_a_valid_lower_bound_on_the_exact_one_sided_mixture(
    s: int, n: int, f: float, above: bool
) -> None:
    from scipy.special import betainc, betaincc, betaln

    from canaryflow.kernel.analysis.sequential import log_mixture_one_sided

    a, b = PRIOR_STRENGTH * f, PRIOR_STRENGTH * (1 - f)
    side = betaincc if above else betainc
    exact = (
        betaln(a + s, b + n - s) + np.log(side(a + s, b + n - s, f)) - betaln(a, b) - np.log(side(a, b, f))
        - s * np.log(f) - (n - s) * np.log1p(-f)
    )  # fmt: skip
    approx = float(log_mixture_one_sided(s, n, f, above))
    assert approx <= exact + 1e-9  # never claims more evidence than there is
    assert approx > float(log_mixture(s, n, f))  # and more than the two-sided mixture gives


def test_many_levels_and_sides_in_one_call_are_the_bounds_of_separate_calls() -> None:
    """A live look judges all its levels and arms in one `binomial_cs` call (its cost is per call):
    every bound is the one a call of its own gives, to the last bit, and a side not wanted reads
    the trivial bound (0 below, 1 above) without being searched."""
    rng = np.random.default_rng(11)
    trials = rng.integers(0, 50_000, size=(2, 40)).astype(float)
    successes = np.floor(trials * rng.random(trials.shape) ** 2)
    successes[:, :3] = 0.0  # no success: lower bound 0
    successes[:, 3:6] = trials[:, 3:6]  # no failure: upper bound 1
    alphas = np.asarray([0.0025, 0.00125, 0.025])
    lower, upper = binomial_cs(successes, trials, alphas[:, None, None], prior_strength=300.0)
    for i, alpha in enumerate(alphas):
        for arm in range(2):
            alone_lower, alone_upper = binomial_cs(successes[arm], trials[arm], float(alpha), 300.0)
            assert np.array_equal(lower[i, arm], alone_lower)
            assert np.array_equal(upper[i, arm], alone_upper)
    wanted = rng.random(lower.shape) < 0.5
    some_lower, some_upper = binomial_cs(
        successes, trials, alphas[:, None, None], 300.0, lower_wanted=wanted, upper_wanted=~wanted
    )
    assert np.array_equal(some_lower, np.where(wanted, lower, 0.0))
    assert np.array_equal(some_upper, np.where(~wanted, upper, 1.0))


def test_equal_searches_are_done_once_and_give_the_bounds_each_would_alone() -> None:
    """A bisection finds each distinct search once (equal cumulative counts at neighbouring bucket
    bounds are common): every bound, copied to its duplicates, is the one its own search gives, to
    the last bit."""
    from canaryflow.kernel.analysis import sequential

    rng = np.random.default_rng(5)
    trials = np.repeat(rng.integers(10, 5_000, size=30).astype(float), 4)
    successes = np.floor(trials * rng.choice([0.1, 0.5, 0.9], size=trials.size))
    threshold = np.log(1.0 / rng.choice([0.0025, 0.025], size=trials.size))
    rate, above = successes / trials, rng.random(trials.size) < 0.5
    outside = np.where(above, 0.0, 1.0)
    assert len(np.unique(np.stack([successes, trials, threshold, above]), axis=1).T) < trials.size
    found = sequential._bisect(successes, trials, threshold, rate, outside, above, 100.0)
    for i in range(trials.size):
        one = sequential._search(
            successes[i : i + 1], trials[i : i + 1], threshold[i : i + 1], rate[i : i + 1],
            outside[i : i + 1], above[i : i + 1], 100.0,
        )  # fmt: skip
        assert found[i] == one[0]


def test_cdf_bounds_searched_only_where_a_quantile_reads_them_give_its_bounds_to_the_last_bit() -> None:
    """`cdf_cs_for_quantiles` searches to the end only the CDF bounds a quantile may read: every
    quantile bound read off it equals the one read off `cdf_cs` (all bounds searched), to the last
    bit, on histograms from a few requests to a million, at several levels and sides, for quantiles
    from the median to beyond the last bucket, with no data and with every request in one bucket."""
    from canaryflow.kernel.analysis.sequential import cdf_cs, cdf_cs_for_quantiles

    rng = np.random.default_rng(29)
    bounds = np.asarray(DEFAULT_LATENCY_BUCKETS_S, dtype=float)
    log_bounds = np.log(bounds)
    compared = 0
    for trial in range(160):
        looks = int(rng.integers(1, 6))
        totals = rng.integers(0, [20, 500, 5_000, 1_000_000][trial % 4], size=(2, looks)).astype(float)
        centre, spread = rng.uniform(log_bounds[0], log_bounds[-1] + 1.0), rng.uniform(0.05, 2.0)
        cdf = stats.norm.cdf((log_bounds - centre) / spread)
        p = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
        counts = np.cumsum(rng.multinomial(totals.astype(int).ravel(), p / p.sum()), axis=-1)[:, :-1]
        counts = counts.reshape(2, looks, -1).astype(float)
        if trial % 10 == 0:  # every request in the first bucket, or none yet
            counts = np.broadcast_to(totals[..., None], counts.shape) * (trial % 20 == 0)
        alpha = np.sort(rng.choice([0.0025, 0.0125, 0.05, 0.2], size=int(rng.integers(1, 4)), replace=False))
        shape = alpha[:, None, None, None]
        lower_wanted = rng.random((alpha.size, 2, 1, 1)) < 0.6
        upper_wanted = rng.random((alpha.size, 2, 1, 1)) < 0.6
        quantiles = list(rng.choice([0.5, 0.9, 0.95, 0.99, 0.999, 1.0, 1e-9], size=int(rng.integers(1, 4))))
        prior = float(rng.choice([100.0, 300.0, 5_000.0]))
        full = cdf_cs(counts, totals, shape, prior, lower_wanted=lower_wanted, upper_wanted=upper_wanted)
        near = cdf_cs_for_quantiles(
            counts, totals, shape, quantiles, prior, lower_wanted=lower_wanted, upper_wanted=upper_wanted
        )
        for q in quantiles:
            want = quantile_cs(bounds, counts, totals, q, shape, full)
            got = quantile_cs(bounds, counts, totals, q, shape, near)
            for w, g in zip(want, got, strict=True):
                assert np.array_equal(w, g, equal_nan=True), (trial, q)
            compared += 1
    assert compared > 300
