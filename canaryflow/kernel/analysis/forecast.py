"""How long each check of a policy needs before it can decide, from the traffic rate: a forecast.

At the start of a step (and offline, `canaryflow analyze plan`) a user wants to know whether the
policy can decide at all before `max_duration_s`: at 2 requests/s the default's first step gives
the canary 0.2 requests/s, and no valid judge shows its error rate below +2 points in 30 minutes.

The forecast asks the engine's own rule. For a canary identical to its baseline it builds the
*expected* cumulative counts after n canary requests (and the baseline's share of the same time):
errors at the baseline's rate, latency buckets at the baseline's CDF (the histogram seen so far, or
a log-normal reference when nothing has been seen), and runs the kinds' evaluators on them at the
levels the engine uses. The first n at which a check passes is its requests needed; divided by the
canary's rate, plus the warm-up, it is the time. Counts at their expectation put each bound where a
typical run puts it, so this is about the median time to a decision of an identical canary, not a
guarantee (a noisy run decides somewhat earlier or later). The minimums (`min_samples`,
`min_baseline_samples`, `min_duration_s`) apply as in the engine.

Pure: numbers in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import norm

from canaryflow.kernel.analysis.judge import CHANGE_SHARE, phases
from canaryflow.kernel.analysis.kinds import METRIC_KINDS, Levels
from canaryflow.kernel.analysis.observations import DEFAULT_LATENCY_BUCKETS_S, Observations
from canaryflow.kernel.analysis.sequential import PRIOR_STRENGTH
from canaryflow.kernel.analysis.series import ArmSeries, FloatArray, ObservationSeries

if TYPE_CHECKING:
    from policies.model import Policy

# Without a histogram seen yet: a log-normal latency of this spread (that of bench/analysis.py's
# steady traffic, p95 ≈ 1.8 × the median), and this share of 5xx.
REFERENCE_SIGMA = 0.35
REFERENCE_ERROR_RATE = 0.005
# Policies shipped for traffic too thin for the default (recommended in this order when they fit).
LOW_TRAFFIC_POLICIES: tuple[str, ...] = ("low-traffic",)
PRIOR_PER_REQUESTS = 9.0  # tuned prior weight: the expected requests / this (sequential.log_mixture)


@dataclass(frozen=True)
class CheckForecast:
    """One check of one step: canary requests and seconds (from the step's start, warm-up included)
    until it can pass; None when more than `_GRID`'s largest count would be needed."""

    metric: str
    requests: int | None
    seconds: float | None


@dataclass(frozen=True)
class StepForecast:
    step: int
    weight: float
    canary_rps: float
    checks: list[CheckForecast]
    seconds: float | None  # the slowest check, and the minimums: when the step can pass
    max_duration_s: float

    @property
    def fits(self) -> bool:
        return self.seconds is not None and self.seconds <= self.max_duration_s

    @property
    def slowest(self) -> CheckForecast | None:
        known = [c for c in self.checks if c.seconds is not None]
        unknown = [c for c in self.checks if c.seconds is None]
        if unknown:
            return unknown[0]
        return max(known, key=lambda c: c.seconds or 0.0) if known else None


@dataclass(frozen=True)
class Forecast:
    rate_rps: float
    steps: list[StepForecast]
    advice: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return all(s.fits for s in self.steps)

    def to_dict(self) -> dict[str, object]:
        """The JSON form (API record, `analyze plan --json`): seconds rounded, None where unknown."""
        return {
            "rate_rps": self.rate_rps,
            "fits": self.fits,
            "steps": [
                {
                    "step": s.step,
                    "weight": s.weight,
                    "canary_rps": round(s.canary_rps, 4),
                    "seconds": _round(s.seconds),
                    "max_duration_s": s.max_duration_s,
                    "fits": s.fits,
                    "checks": [
                        {"metric": c.metric, "requests": c.requests, "seconds": _round(c.seconds)}
                        for c in s.checks
                    ],
                }
                for s in self.steps
            ],
            "advice": self.advice,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def reference_cdf(
    bounds: Sequence[float] | FloatArray, sigma: float = REFERENCE_SIGMA, median_s: float = 0.02
) -> FloatArray:
    """A log-normal latency CDF at the bucket bounds (the forecast's reference shape)."""
    b = np.asarray(bounds, dtype=float)
    return np.asarray(norm.cdf((np.log(b) - math.log(median_s)) / sigma), dtype=float)


def forecast(
    policy: Policy,
    rate_rps: float,
    *,
    error_rate: float = REFERENCE_ERROR_RATE,
    latency_bounds: Sequence[float] = DEFAULT_LATENCY_BUCKETS_S,
    latency_cdf: Sequence[float] | None = None,
    steps: Sequence[int] | None = None,
    refine: bool = True,
) -> Forecast:
    """The expected time to a decision of every check of every step (or of `steps`) at `rate_rps`
    requests/s in all, for a canary identical to its baseline.

    `latency_cdf`: the baseline's share of requests at or below each of `latency_bounds` (the
    histogram seen so far, cumulative counts / total); a log-normal reference without it.
    `error_rate`: the baseline's share of 5xx. `refine=False`: requests to within the coarse
    grid's 21% (a third of the work: what a live step asks on every look).
    """
    if not math.isfinite(rate_rps) or rate_rps <= 0:
        raise ValueError(f"rate_rps: must be a positive number of requests per second, got {rate_rps}")
    if not 0 <= error_rate < 1:
        raise ValueError(f"error_rate: must be in [0, 1), got {error_rate}")
    bounds = np.asarray(latency_bounds, dtype=float)
    cdf = reference_cdf(bounds) if latency_cdf is None else np.asarray(latency_cdf, dtype=float)
    if cdf.shape != bounds.shape:
        raise ValueError(f"latency_cdf: {cdf.size} values for {bounds.size} bucket bounds")
    cdf = np.clip(np.maximum.accumulate(cdf), 0.0, 1.0)
    out: list[StepForecast] = []
    for index in steps if steps is not None else range(len(policy.steps)):
        out.append(_step(policy, index, rate_rps, error_rate, bounds, cdf, refine))
    result = Forecast(rate_rps=rate_rps, steps=out)
    return Forecast(rate_rps=rate_rps, steps=out, advice=advice(policy, result))


def _levels(policy: Policy) -> Levels:
    """The cumulative check's levels, as the engine sets them (engine.evaluate_series)."""
    strength = policy.prior_strength
    share = policy.error_budget.false_rollback / phases(policy) / max(policy.statistical_checks, 1)
    at_tolerance = policy.error_budget.false_rollback_at_tolerance / phases(policy)
    return Levels(
        same=share * (1 - CHANGE_SHARE),
        tolerance=max(share, at_tolerance) * (1 - CHANGE_SHARE),
        promote=policy.error_budget.false_promote,
        prior_strength=strength,
    )


def _step(
    policy: Policy,
    index: int,
    rate: float,
    error_rate: float,
    bounds: FloatArray,
    cdf: FloatArray,
    refine: bool = True,
) -> StepForecast:
    step = policy.steps[index]
    weight = float(step.weight)
    canary_rps = rate * weight / 100.0
    # Only the buckets where the CDF is between 1% and 99.99% can hold a bound on a policy quantile
    # (a few dozen of the hundred): the rest would cost most of the time and change nothing.
    keep = np.flatnonzero((cdf >= 0.01) & (cdf <= 0.9999))
    keep = np.arange(keep[0], keep[-1] + 1) if keep.size else np.arange(bounds.size)
    trimmed = (bounds[keep], cdf[keep])
    coarse = _passing(policy, weight, error_rate, trimmed, _GRID)
    # Refine between the last coarse count that did not pass and the first that did.
    needed: dict[str, int | None] = {}
    for metric, at in coarse.items():
        if at is None or at == 0 or not refine:
            needed[metric] = None if at is None else int(_GRID[at])
            continue
        fine = np.unique(np.round(np.linspace(_GRID[at - 1], _GRID[at], 12))).astype(float)
        refined = _passing(policy, weight, error_rate, trimmed, fine, only=metric)[metric]
        needed[metric] = int(fine[refined]) if refined is not None else int(_GRID[at])
    checks = [
        CheckForecast(metric, n, None if n is None else step.warmup_s + n / canary_rps)
        for metric, n in needed.items()
    ]
    minimum = step.warmup_s + max(
        step.min_duration_s,
        max(step.min_samples, 1) / canary_rps,
        policy.min_baseline_samples / max(rate - canary_rps, 1e-12),
    )
    known = [c.seconds for c in checks]
    seconds = None if any(s is None for s in known) else max([minimum, *(s for s in known if s is not None)])
    return StepForecast(index, weight, canary_rps, checks, seconds, policy.max_duration_s)


# Coarse grid for the first pass (about 21% apart), refined between two of its points after.
_GRID = np.unique(np.round(np.geomspace(10, 1e7, 74)))


_ROWS_AT_ONCE = 16  # rows of the grid judged per call: most checks pass within its first 24


def _passing(
    policy: Policy,
    weight: float,
    error_rate: float,
    histogram: tuple[FloatArray, FloatArray],
    n: FloatArray,
    only: str | None = None,
) -> dict[str, int | None]:
    """Per required statistical check (the check `only`, where given: a refinement asks about one,
    and the other metrics' checks are not judged), the first row of `n` (canary requests) at which
    it passes.

    Each row is judged on its own counts alone (the kinds' evaluators are elementwise over looks),
    so the rows are judged `_ROWS_AT_ONCE` at a time, in order, and those after every check's first
    passing row are never judged: the same answer as judging them all, for a fraction of the work
    (a check passes after about 20 of the coarse grid's 74 rows)."""
    bounds, cdf = histogram
    levels = _levels(policy)
    metrics = [
        metric
        for metric in policy.metrics
        # optional ones are judged when present, a gauge has nothing to wait for
        if METRIC_KINDS[metric.kind].statistical and metric.required and metric.kind != "shadow_distance"
        and (only is None or only in metric.checks)
    ]  # fmt: skip
    out: dict[str, int | None] = {}
    for start in range(0, len(n), _ROWS_AT_ONCE):
        series = _expected(n[start : start + _ROWS_AT_ONCE], weight, error_rate, bounds, cdf)
        for metric in metrics:
            for check in METRIC_KINDS[metric.kind].evaluate(metric, series, levels):
                if only is not None and check.metric != only:
                    continue
                passing = np.flatnonzero(check.passes & ~check.fails)
                if out.get(check.metric) is None:
                    out[check.metric] = start + int(passing[0]) if passing.size else None
        if all(at is not None for at in out.values()):
            break
    return out


def _expected(
    n: FloatArray, weight: float, error_rate: float, bounds: FloatArray, cdf: FloatArray
) -> ObservationSeries:
    """Both arms' expected counts after `n` canary requests each (the baseline's share of the same
    time), errors at `error_rate`, latencies at `cdf`: one row per element of `n`."""
    m = n * (100.0 - weight) / weight

    def arm(count: FloatArray) -> ArmSeries:
        return ArmSeries(
            requests=count,
            errors=np.round(count * error_rate),
            latency_counts=np.round(count[:, None] * cdf[None, :]),
            latency_totals=count,
        )

    return ObservationSeries(elapsed_s=n, baseline=arm(m), canary=arm(n), latency_bounds=bounds)


def forecast_from_looks(policy: Policy, looks: Sequence[Observations], step_index: int) -> Forecast | None:
    """The step's forecast from what it has seen (its readings since the warm-up, oldest first):
    the rate of both arms together, the baseline's error rate and latency histogram. None before
    a request has been seen."""
    seen = traffic_reference(looks[-1]) if looks else None
    if seen is None:
        return None
    rate, reference = seen
    return forecast(policy, rate, steps=[step_index], refine=False, **reference)


def traffic_reference(seen: Observations) -> tuple[float, dict[str, Any]] | None:
    """The rate (both arms, requests/s) and the baseline's error rate and latency histogram in the
    form `forecast` takes them; None before the baseline has served a request."""
    served = seen.baseline.requests + seen.canary.requests
    if seen.elapsed_s <= 0 or served <= 0 or seen.baseline.requests <= 0:
        return None
    histogram = seen.baseline.latency_s
    reference: dict[str, Any] = {"error_rate": min(seen.baseline.errors / seen.baseline.requests, 0.5)}
    if histogram is not None and histogram.total > 0:
        reference["latency_bounds"] = histogram.bounds
        reference["latency_cdf"] = np.asarray(histogram.counts, dtype=float) / histogram.total
    return served / seen.elapsed_s, reference


def forecast_lines(record: dict[str, Any]) -> list[str]:
    """A forecast (`Forecast.to_dict`, as a verdict stores it) in words, one line per step, then its
    advice: "step 1 (10%) at 0.2 canary requests/s: latency p50 about 1,000 s, error-rate more than
    a week; expected to decide in more than max_duration_s (1,800 s)". What notices and pull-request
    bodies show."""
    lines = []
    for step in record.get("steps") or []:
        checks = ", ".join(
            f"{_words(str(c.get('metric')))} {_about(c.get('seconds'))}" for c in step.get("checks") or []
        )
        limit = _thousands(float(step.get("max_duration_s") or 0.0))
        seconds = step.get("seconds")
        when = (
            f"expected to decide {_about(seconds)}"
            if step.get("fits")
            else f"not expected to decide within max_duration_s ({limit} s)"
        )
        lines.append(
            f"step {int(step.get('step', 0)) + 1} ({float(step.get('weight', 0)):g}%) at "
            f"{float(step.get('canary_rps', 0)):.2g} canary requests/s: {checks or 'no statistical check'};"
            f" {when}"
        )
    return lines + [str(a) for a in record.get("advice") or []]


def _about(seconds: object) -> str:
    return "in more than a week" if seconds is None else f"in about {_thousands(float(str(seconds)))} s"


def _words(metric: str) -> str:
    from canaryflow.kernel.analysis.wording import label

    return label(metric).replace("error_rate", "error-rate")


def advice(policy: Policy, result: Forecast) -> list[str]:
    """One sentence per step that cannot decide within `max_duration_s`, e.g. "at 0.4 canary
    requests/s the error-rate check needs about 2,600 s; `max_duration_s` is 1,800 s: consider
    `policies/low-traffic.yaml` or a larger weight"."""
    lines: list[str] = []
    for s in result.steps:
        slowest = s.slowest
        if s.fits or slowest is None:
            continue
        need = "more than a week" if slowest.seconds is None else f"about {_thousands(slowest.seconds)} s"
        lines.append(
            f"step {s.step + 1} ({s.weight:g}%): at {s.canary_rps:.2g} canary requests/s the "
            f"{_words(slowest.metric)} check needs {need}; `max_duration_s` is "
            f"{_thousands(s.max_duration_s)} s: consider `policies/low-traffic.yaml` or a larger weight"
        )
    return lines


def _thousands(seconds: float) -> str:
    """Two significant figures, with a thousands separator: 2,600."""
    if seconds < 100:
        return f"{seconds:.0f}"
    digits = 10 ** (int(math.log10(seconds)) - 1)
    return f"{round(seconds / digits) * digits:,.0f}"


def tuned_prior_strength(policy: Policy, rate_rps: float, **reference: Any) -> float:
    """The mixture prior weight for the requests `policy`'s slowest check is expected to need at
    `rate_rps`: about a ninth of them (the normal-mixture boundary is narrowest there), never below
    the shipped `sequential.PRIOR_STRENGTH`. Fixed before the step from earlier traffic, so the
    confidence sequences built with it stay anytime-valid."""
    needed = [c.requests for s in forecast(policy, rate_rps, **reference).steps for c in s.checks]
    known = [n for n in needed if n is not None]
    most = max(known) if len(known) == len(needed) and known else int(_GRID[-1])
    return float(min(max(PRIOR_STRENGTH, round(most / PRIOR_PER_REQUESTS, -1)), 1e6))


@dataclass(frozen=True)
class Recommendation:
    """A policy that can decide in time where the one asked about cannot."""

    name: str  # the shipped policy it derives from, e.g. "low-traffic"
    policy: Policy
    forecast: Forecast

    @property
    def label(self) -> str:
        tuned = self.policy.prior_strength != PRIOR_STRENGTH
        return f"{self.name} with prior_strength {self.policy.prior_strength:g}" if tuned else self.name


def recommend(
    policy: Policy, rate_rps: float, candidates: dict[str, Policy], **reference: Any
) -> Recommendation | None:
    """None when `policy` can decide within `max_duration_s` at `rate_rps`; else the first that
    can of: `policy` with its prior tuned to the expected sample size, then each of `candidates`
    (name -> policy, e.g. the shipped low-traffic policy) likewise tuned (a prior is only ever
    raised above the shipped weight, for a step expected to need thousands of requests); None if
    none can."""
    if forecast(policy, rate_rps, **reference).fits:
        return None
    options: list[tuple[str, Policy]] = [("this policy", policy), *list(candidates.items())]
    for name, candidate in options:
        strength = tuned_prior_strength(candidate, rate_rps, **reference)
        if name == "this policy" and strength == candidate.prior_strength:
            continue  # nothing to tune: it does not fit as it is
        tuned = candidate.model_copy(update={"prior_strength": strength})
        result = forecast(tuned, rate_rps, **reference)
        if result.fits:
            return Recommendation(name, tuned, result)
    return None
