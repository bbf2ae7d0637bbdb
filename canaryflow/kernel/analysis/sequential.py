"""Anytime-valid confidence sequences: bounds that hold at every moment at once, so looking at them
every few seconds and stopping at the first decisive look does not inflate the error rates.

All of it rests on one martingale. For n independent 0/1 outcomes with success probability f, the
beta-binomial mixture (uniform prior on the alternative)

    M_n(f) = B(1 + s, 1 + n - s) / (f^s (1 - f)^(n - s))

(written here for a uniform prior; `log_mixture` centres a Beta prior on f instead) is a
nonnegative martingale with mean 1 under f, so by Ville's inequality
P(exists n: M_n(f) >= 1/alpha) <= alpha. The set {f : M_n(f) < 1/alpha} is then a confidence
sequence for f (Howard, Ramdas, McAuliffe & Sekhon 2021; Howard & Ramdas 2022 use it for quantiles).
Every decision uses one side of it only (the canary's lower bound to roll back, its upper bound to
promote), so each bound comes from the mixture restricted to its side (`log_mixture_one_sided`).

- rates (errors / requests): the set above, directly;
- quantiles from histogram buckets: at a bucket bound b, "latency <= b" is such a 0/1 outcome with
  f = F(b), so each bound's cumulative count gives a confidence sequence for the CDF there. The
  quantile is the one Prometheus' `histogram_quantile` defines (linear inside the bucket); it is
  increasing in the CDF values at the two bounds around it, so the quantile read from the upper
  (lower) CDF bounds is a lower (upper) bound on it. Only those two bounds matter, hence alpha/2 each;
- sample-ratio mismatch: the same martingale at f = the configured canary share, as a test (an
  e-value); Lindon & Malek's Dirichlet-multinomial test for two arms.

Everything is vectorised: leading axes are evaluation times (and anything else), so a whole replay is
a handful of numpy calls.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betainc, betaln

FloatArray = NDArray[np.float64]

_BISECTION_STEPS = 30  # 2^-30 of the unit interval: far below any tolerance a policy states
# Weight (in observations) of the mixture prior around the tested value; tuned for decisions after a
# few hundred to a few thousand samples (Howard & Ramdas tune theirs to a target sample size). A
# policy may set another (`Policy.prior_strength`, e.g. the forecast's tuning for a step expected to
# need tens of thousands of requests): any value fixed before the step's data is valid.
PRIOR_STRENGTH = 100.0


def log_mixture(
    successes: ArrayLike, trials: ArrayLike, f: ArrayLike, prior_strength: float = PRIOR_STRENGTH
) -> FloatArray:
    """log M_n(f) of the beta-binomial mixture martingale; 0 with no trials.

    The prior over the alternative is Beta(k f, k (1 - f)): centred on the tested value, with the
    weight of PRIOR_STRENGTH observations. A uniform prior would cost about
    0.5 log(n / (2 pi f (1 - f))) nats of evidence, which for rare errors is as much as the
    threshold itself; a prior as wide as the differences worth detecting costs 0.5 log(1 + n / k).
    The prior depends on f only, never on the data, so each M_n(f) stays a test martingale.
    `prior_strength` k is best near a ninth of the sample size at which a decision is expected
    (the normal-mixture boundary's optimum); it must be fixed before the data it judges.
    """
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    p = _clip_rate(np.asarray(f, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = _log_mixture(s, n, p, np.log(p), np.log1p(-p), prior_strength)
    return np.asarray(value, dtype=float)


def _clip_rate(f: FloatArray) -> FloatArray:
    """f kept inside (0, 1), where the logarithms are finite (`np.clip`'s result, with less overhead)."""
    return np.minimum(np.maximum(f, 1e-12), 1.0 - 1e-12)


def _log_mixture(
    s: FloatArray, n: FloatArray, p: FloatArray, log_p: FloatArray, log_q: FloatArray, k: float
) -> FloatArray:
    """`log_mixture` at a clipped `p`, given log(p) and log(1 - p) (the one-sided bound needs them too)."""
    a, b = k * p, k * (1.0 - p)
    return np.asarray(betaln(a + s, b + n - s) - betaln(a, b) - s * log_p - (n - s) * log_q, dtype=float)


def binomial_cs(
    successes: ArrayLike,
    trials: ArrayLike,
    alpha: float | ArrayLike,
    prior_strength: float = PRIOR_STRENGTH,
    *,
    lower_wanted: ArrayLike = True,
    upper_wanted: ArrayLike = True,
) -> tuple[FloatArray, FloatArray]:
    """Time-uniform one-sided bounds on a success probability after `successes` in `trials`.

    `lower` stays below the truth at every n with probability at least 1 - alpha, and so does
    `upper` above it (each side on its own: every decision uses one side). Each end is found by
    bisection between the observed rate (never rejected) and 0 or 1. With no trials the bounds are
    0 and 1: no data never decides anything.

    `alpha` may be an array broadcast against the counts: several levels (a check's levels, both
    arms) in one call. Every bound is found by the same bisection either way, so the numbers are
    the ones separate calls give; but a bisection costs per call far more than per bound (numpy's
    overhead on small arrays), so a live look that judges a few dozen bounds does it in one.

    `lower_wanted` / `upper_wanted` (booleans broadcast against the counts): where False, that side
    is not searched and reads 0 (lower) or 1 (upper), a bound that holds trivially. A check that
    reads one side of each arm at each level (`kinds.base.bounds_read`) halves its cost so.
    """
    lower, upper, low, high, searches = _searches(successes, trials, alpha, lower_wanted, upper_wanted)
    found = _bisect(*searches, k=prior_strength)
    count = int(np.count_nonzero(low))
    lower[low], upper[high] = found[:count], found[count:]
    return lower, upper


Searches = tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]


def _searches(
    successes: ArrayLike,
    trials: ArrayLike,
    alpha: float | ArrayLike,
    lower_wanted: ArrayLike,
    upper_wanted: ArrayLike,
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], NDArray[np.bool_], Searches]:
    """`binomial_cs`'s bounds before the search: (lower, upper) holding the trivial bounds, where each
    is searched, and the searches (successes, trials, threshold, inside, outside, above), the lower
    bounds' first."""
    s, n, level, want_low, want_high = np.broadcast_arrays(
        np.asarray(successes, dtype=float),
        np.asarray(trials, dtype=float),
        np.asarray(alpha, dtype=float),
        np.asarray(lower_wanted, dtype=bool),
        np.asarray(upper_wanted, dtype=bool),
    )
    s, n = np.array(s), np.array(n)
    threshold = np.log(1.0 / level)
    rate = np.divide(s, n, out=np.zeros_like(s, dtype=float), where=n > 0)
    # No success: the lower bound is 0; no failure: the upper bound is 1 (most histogram bounds are
    # one or the other), so only the rest are searched, both sides in one bisection.
    lower = np.zeros_like(rate)
    upper = np.ones_like(rate)
    low, high = (s > 0) & want_low, (s < n) & want_high
    count = int(np.count_nonzero(low))
    searches = (
        np.concatenate([s[low], s[high]]),
        np.concatenate([n[low], n[high]]),
        np.concatenate([threshold[low], threshold[high]]),
        np.concatenate([rate[low], rate[high]]),
        np.concatenate([lower[low], upper[high]]),
        np.arange(count + int(np.count_nonzero(high))) < count,
    )
    return lower, upper, low, high, searches


def log_mixture_one_sided(
    successes: ArrayLike,
    trials: ArrayLike,
    f: ArrayLike,
    above: bool | NDArray[np.bool_],
    prior_strength: float = PRIOR_STRENGTH,
) -> FloatArray:
    """A lower bound on log M+_n(f), the mixture with the prior restricted to one side of f.

    M+ (prior on theta > f when `above`, renormalised) is a mixture of likelihood ratios, hence a
    test martingale under f, and it only grows when the data point to that side: rejecting with it
    gives a one-sided bound at the full alpha (about log 2 of evidence better than the two-sided
    set). Exactly it needs incomplete beta functions of the data, too slow here; but while the
    observed rate lies on that side of f, every likelihood ratio on the other side is at most 1,
    so M+ >= (M - pi_other) / pi_side, with pi the prior's mass on each side (a function of f only,
    tabulated). Rejecting when this lower bound crosses 1/alpha is therefore valid. `above` may be
    an array (each element's side).
    """
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return _one_sided(s, n, np.asarray(f, dtype=float), np.asarray(above), float(prior_strength))


def _one_sided(s: FloatArray, n: FloatArray, f: FloatArray, above: NDArray[np.bool_], k: float) -> FloatArray:
    """`log_mixture_one_sided` on float arrays, under the caller's `np.errstate` (the bisection's loop)."""
    p = _clip_rate(f)
    log_p, log_q = np.log(p), np.log1p(-p)
    log_m = _log_mixture(s, n, p, log_p, log_q, k)
    # P(theta < f) under the prior Beta(k f, k (1 - f)), interpolated in logit(f).
    below = np.interp(log_p - log_q, _LOGIT_GRID, _tabulate_prior_mass_below(k))
    beyond = 1.0 - below
    # Interpolation margin: overstate the other side's mass, understate this side's: conservative.
    other = np.minimum(np.where(above, below, beyond) + _MASS_MARGIN, 1.0)
    side = np.maximum(np.where(above, beyond, below) - _MASS_MARGIN, 1e-12)
    log_excess = log_m + np.log1p(-np.minimum(other * np.exp(-log_m), 1.0))
    return np.asarray(log_excess - np.log(side), dtype=float)


_MASS_MARGIN = 1e-4
_DEDUP_FROM = 16  # searches in one bisection from which equal ones are found and done once
_LOGIT_GRID = np.linspace(-28.0, 28.0, 8001)


@functools.lru_cache(maxsize=16)
def _tabulate_prior_mass_below(prior_strength: float = PRIOR_STRENGTH) -> FloatArray:
    f = 1.0 / (1.0 + np.exp(-_LOGIT_GRID))
    return np.asarray(betainc(prior_strength * f, prior_strength * (1.0 - f), f), dtype=float)


def _bisect(
    s: FloatArray,
    n: FloatArray,
    threshold: FloatArray,
    inside: FloatArray,
    outside: FloatArray,
    above: NDArray[np.bool_],
    k: float = PRIOR_STRENGTH,
) -> FloatArray:
    """The f between `inside` (accepted) and `outside` where the one-sided evidence crosses.

    Searches that are the same to the last bit (neighbouring bucket bounds with equal cumulative
    counts, one count at several levels: about half of a live look's) are done once and their bound
    copied: every step is elementwise, so a search's answer depends on its own inputs only."""
    a = inside.astype(float).copy()
    b = outside.astype(float).copy()
    groups = _distinct(s, n, threshold, a, b, above)
    if groups is not None:
        first, inverse = groups
        found = _search(s[first], n[first], threshold[first], a[first], b[first], above[first], k)
        return np.asarray(found[inverse], dtype=float)
    return _search(s, n, threshold, a, b, above, k)


def _distinct(
    s: FloatArray,
    n: FloatArray,
    threshold: FloatArray,
    a: FloatArray,
    b: FloatArray,
    above: NDArray[np.bool_],
) -> tuple[NDArray[np.intp], NDArray[np.intp]] | None:
    """The first of each group of searches equal to the last bit, and each search's group; None when
    they are too few to look for equal ones or all differ."""
    if a.size < _DEDUP_FROM:
        return None
    rows = np.column_stack((s, n, threshold, a, b, above)).astype(float)
    keys = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.itemsize * rows.shape[1])))
    _, first, inverse = np.unique(keys.ravel(), return_index=True, return_inverse=True)
    return (first, inverse.ravel()) if first.size < a.size else None


def _search(
    s: FloatArray,
    n: FloatArray,
    threshold: FloatArray,
    a: FloatArray,
    b: FloatArray,
    above: NDArray[np.bool_],
    k: float,
) -> FloatArray:
    """`_bisect`'s steps from `a` (accepted) and `b` (rejected), arrays it may replace."""
    return _steps(s, n, threshold, a, b, above, k, _BISECTION_STEPS)[0]


def _steps(
    s: FloatArray,
    n: FloatArray,
    threshold: FloatArray,
    a: FloatArray,
    b: FloatArray,
    above: NDArray[np.bool_],
    k: float,
    steps: int,
) -> tuple[FloatArray, FloatArray]:
    """`steps` bisection steps from `a` (accepted) and `b` (rejected): the two ends after them. Each
    step's midpoint lies between the ends (rounding is monotone), so every later end does too: the
    bound a search ends with lies between the ends of any step before it. Elementwise: the steps
    of a search are the same, to the last bit, run with others or alone, in one call or in two."""
    if not a.size:
        return a, b
    k = float(k)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for _ in range(steps):
            mid = 0.5 * (a + b)
            rejected = _one_sided(s, n, mid, above, k) >= threshold
            a = np.where(rejected, a, mid)
            b = np.where(rejected, mid, b)
    # Report the accepted side (`a`): the bound keeps its promised coverage.
    return a, b


def quantile_from_cdf(bounds: ArrayLike, cdf: ArrayLike, q: float) -> FloatArray:
    """The q-quantile of a CDF known at bucket bounds, interpolated as `histogram_quantile` does.

    The first bucket starts at 0; a quantile beyond the last finite bound is +inf.
    """
    edges = np.concatenate([[0.0], np.asarray(bounds, dtype=float)])
    cdf_arr = np.asarray(cdf, dtype=float)
    values = np.concatenate([np.zeros((*cdf_arr.shape[:-1], 1)), cdf_arr], axis=-1)
    # Make the CDF non-decreasing (per-bound bounds are each monotone in the count; guard rounding).
    values = np.maximum.accumulate(values, axis=-1)
    reached = values >= q
    found = reached.any(axis=-1)
    k = np.argmax(reached, axis=-1)  # first edge index with CDF >= q (k >= 1 when q > 0)
    k = np.minimum(np.maximum(k, 1), len(edges) - 1)
    # The CDF at edges k and k - 1 of each row (`take_along_axis`'s values, without its overhead).
    rows = values.reshape(-1, values.shape[-1])
    at = np.arange(rows.shape[0]), k.reshape(-1)
    hi_cdf = rows[at].reshape(k.shape)
    lo_cdf = rows[at[0], at[1] - 1].reshape(k.shape)
    lo_edge = edges[k - 1]
    hi_edge = edges[k]
    span = hi_cdf - lo_cdf
    frac = np.divide(q - lo_cdf, span, out=np.ones_like(span), where=span > 0)
    quantile = lo_edge + (hi_edge - lo_edge) * np.clip(frac, 0.0, 1.0)
    return np.where(found, quantile, np.inf)


def cdf_cs(
    counts: ArrayLike,
    totals: ArrayLike,
    alpha: float | ArrayLike,
    prior_strength: float = PRIOR_STRENGTH,
    *,
    lower_wanted: ArrayLike = True,
    upper_wanted: ArrayLike = True,
) -> tuple[FloatArray, FloatArray]:
    """Bounds on the CDF at every bucket bound, each at level alpha/2 (a quantile needs two of them).
    `alpha` and the sides wanted may be arrays broadcast against the counts, as in `binomial_cs`."""
    counts_arr, totals_arr, half = _cdf_arguments(counts, totals, alpha)
    return binomial_cs(
        counts_arr, totals_arr, half, prior_strength, lower_wanted=lower_wanted, upper_wanted=upper_wanted
    )


def _cdf_arguments(
    counts: ArrayLike, totals: ArrayLike, alpha: float | ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """A CDF's bounds as binomial searches: each bucket's count of its total, at level alpha/2."""
    counts_arr = np.asarray(counts, dtype=float)
    totals_arr = np.broadcast_to(np.asarray(totals, dtype=float)[..., None], counts_arr.shape)
    return counts_arr, totals_arr, np.asarray(alpha, dtype=float) / 2.0


_FIRST_STEPS = 6  # steps every CDF bound's search takes before those no quantile reads stop


def cdf_cs_for_quantiles(
    counts: ArrayLike,
    totals: ArrayLike,
    alpha: float | ArrayLike,
    quantiles: Sequence[float],
    prior_strength: float = PRIOR_STRENGTH,
    *,
    lower_wanted: ArrayLike = True,
    upper_wanted: ArrayLike = True,
) -> tuple[FloatArray, FloatArray]:
    """`cdf_cs` as `quantile_cs` reads it at `quantiles`: every quantile bound read off these is the
    one read off `cdf_cs`'s, to the last bit, at a fraction of the cost.

    A quantile bound reads the CDF bounds at the two bucket bounds around the quantile (and the
    largest one before them: `quantile_from_cdf` makes the CDF nondecreasing), not the other ~100.
    Every search first takes `_FIRST_STEPS` steps, after which its bound is known to lie between
    its two ends (`_steps`); from those alone `_read_by` finds the bounds a quantile may read. Only
    those are searched to the end, as `cdf_cs` searches them; the others read their lower end,
    which moves no quantile bound (`_read_by` says why)."""
    lower, upper, low, high, (s, n, threshold, inside, outside, above) = _searches(
        *_cdf_arguments(counts, totals, alpha), lower_wanted, upper_wanted
    )
    groups = _distinct(s, n, threshold, inside, outside, above)
    first, inverse = groups if groups is not None else (np.arange(s.size), np.arange(s.size))
    s, n, threshold, above = s[first], n[first], threshold[first], above[first]
    k = float(prior_strength)
    a, b = _steps(s, n, threshold, inside[first].copy(), outside[first].copy(), above, k, _FIRST_STEPS)
    least, most = np.minimum(a, b), np.maximum(a, b)
    count = int(np.count_nonzero(low))
    # Both sides' CDFs in one array: (side, ...) with each search's ends where it is searched.
    searched = np.stack([low, high])
    ends = [np.stack([lower, upper]) for _ in range(2)]
    for end, of in zip(ends, (least, most), strict=True):
        end[searched] = np.concatenate([of[inverse[:count]], of[inverse[count:]]])
    read = _read_by(ends[0], ends[1], quantiles)[searched]
    todo = np.zeros(first.size, dtype=bool)
    todo[inverse[read]] = True
    found = least.copy()
    more = _BISECTION_STEPS - _FIRST_STEPS
    found[todo] = _steps(s[todo], n[todo], threshold[todo], a[todo], b[todo], above[todo], k, more)[0]
    lower[low], upper[high] = found[inverse[:count]], found[inverse[count:]]
    return lower, upper


def _read_by(least: FloatArray, most: FloatArray, quantiles: Sequence[float]) -> NDArray[np.bool_]:
    """Where `quantile_from_cdf` may read a CDF (bucket bounds on the last axis) known only to lie
    between `least` and `most`, at any of `quantiles`.

    Let C be the CDF made nondecreasing (a 0 first) and k the first index with C_k >= q: the
    quantile reads C at k and k - 1 (k clipped to 1 … the last) and whether there is such a k. C
    lies between the running maxima of `least` and `most`, so k lies between the first index where
    `most`'s reaches q and the first where `least`'s does (or the end): every bound in that range is
    read. Before it, C at k - 1 is the running maximum there, at least `least`'s, m; a bound whose
    `most` is below m is never that maximum, and a bound at m or above is read. So any CDF between
    `least` and `most` that equals the true one where this says "read" gives every quantile bound
    the true CDF gives."""
    width = least.shape[-1]
    rows = int(np.prod(least.shape[:-1]))
    if width == 0 or rows == 0:
        return np.zeros(least.shape, dtype=bool)
    zero = np.zeros((rows, 1))
    low_max = np.maximum.accumulate(np.concatenate([zero, least.reshape(rows, width)], axis=1), axis=1)
    high_max = np.maximum.accumulate(np.concatenate([zero, most.reshape(rows, width)], axis=1), axis=1)
    q = np.asarray(quantiles, dtype=float)[:, None, None]  # (quantile, row, index)
    start = np.maximum(_first_reaching(high_max >= q), 1)
    end = np.minimum(np.maximum(_first_reaching(low_max >= q), 1), width)
    floor = low_max[np.arange(rows), start - 1]
    index = np.arange(1, width + 1)
    start, end, floor = start[..., None], end[..., None], floor[..., None]
    read = ((index >= start) & (index <= end)) | ((index < start) & (most.reshape(rows, width) >= floor))
    return np.asarray(read.any(axis=0).reshape(least.shape))


def _first_reaching(reached: NDArray[np.bool_]) -> NDArray[np.intp]:
    """The first index on the last axis where `reached` holds; the axis' length where it never does."""
    return np.where(reached.any(axis=-1), np.argmax(reached, axis=-1), reached.shape[-1])


def quantile_cs(
    bounds: ArrayLike,
    counts: ArrayLike,
    totals: ArrayLike,
    q: float,
    alpha: float | ArrayLike,
    cdf_bounds: tuple[FloatArray, FloatArray] | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(lower, upper, estimate) of the q-quantile from cumulative bucket counts, time-uniformly.

    `counts` has the bounds on its last axis, `totals` the matching leading shape. `cdf_bounds`
    (from `cdf_cs` at the same alpha) saves recomputing them for several quantiles.
    """
    counts_arr = np.asarray(counts, dtype=float)
    totals_arr = np.asarray(totals, dtype=float)[..., None]
    cdf_low, cdf_high = (
        cdf_bounds if cdf_bounds is not None else cdf_cs(counts_arr, totals_arr[..., 0], alpha)
    )
    # Both ends in one call: each row is read on its own, so the numbers are those of two calls.
    lower, upper = quantile_from_cdf(bounds, np.stack(np.broadcast_arrays(cdf_high, cdf_low)), q)
    no_data = totals_arr[..., 0] <= 0
    return (
        np.where(no_data, 0.0, lower),
        np.where(no_data, np.inf, upper),
        quantile_estimate(bounds, counts_arr, totals_arr[..., 0], q),
    )


def quantile_estimate(bounds: ArrayLike, counts: ArrayLike, totals: ArrayLike, q: float) -> FloatArray:
    """The q-quantile of the empirical CDF (`histogram_quantile`'s reading); NaN with no data."""
    counts_arr = np.asarray(counts, dtype=float)
    totals_arr = np.asarray(totals, dtype=float)[..., None]
    empirical = np.divide(counts_arr, totals_arr, out=np.zeros_like(counts_arr), where=totals_arr > 0)
    return np.where(totals_arr[..., 0] <= 0, np.nan, quantile_from_cdf(bounds, empirical, q))


def srm_log_evidence(canary: ArrayLike, total: ArrayLike, share: float) -> FloatArray:
    """Log e-value against "each request goes to the canary with probability `share`".

    It is a test martingale under a fair split, so comparing it with log(1/alpha) at every look keeps
    the false-alarm rate at alpha.
    """
    return log_mixture(canary, total, share)
