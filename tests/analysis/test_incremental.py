"""A live step judged look by look (`incremental.advance`) decides as the full re-judging of every
look (`analyze_looks`) does: the same status and verdict, at the same look, on many seeds, across
canaries that pass, fail, recover from a cold start or regress late, with ticks of one or several
looks, a bake that judges only its later looks, and states rebuilt mid-step (a restart)."""

from __future__ import annotations

import numpy as np
import pytest

from canaryflow.kernel.analysis import analyze_looks
from canaryflow.kernel.analysis.incremental import StepAnalysis, advance
from canaryflow.kernel.analysis.observations import (
    DEFAULT_LATENCY_BUCKETS_S,
    DEFAULT_SHADOW_BUCKETS,
    ArmObservations,
    Histogram,
    MetricArms,
    Observations,
)
from canaryflow.kernel.analysis.series import ObservationSeries, concat
from policies import load_policy
from policies.model import Policy

BOUNDS = np.asarray(DEFAULT_LATENCY_BUCKETS_S)
EVERY_S = 5.0

# name -> (canary latency factor at t, canary error rate at t)
SCENARIOS = {
    "same": (lambda t: 1.0, lambda t: 0.005),
    "slower": (lambda t: 1.4, lambda t: 0.005),
    "errors": (lambda t: 1.0, lambda t: 0.05),
    "cold start": (lambda t: 3.0 if t < 60 else 1.0, lambda t: 0.005),
    "late regression": (lambda t: 1.0 if t < 120 else 1.3, lambda t: 0.005),
}


def _policy() -> Policy:
    """The default policy, shortened so a step decides (or runs out) within a few hundred looks."""
    base = load_policy("default")
    steps = [s.model_copy(update={"min_duration_s": 150, "min_samples": 100}) for s in base.steps]
    return base.model_copy(
        update={"steps": steps, "change_window_s": 60.0, "max_duration_s": 600.0, "bake_s": 120.0}
    )


def _looks(seed: int, scenario: str, count: int, weight: float) -> list[Observations]:
    """Cumulative readings every 5 s of a canary at `weight` percent of 30 requests/s, latencies
    log-normal around 20 ms with a common burst now and then; at first nothing is served."""
    rng = np.random.default_rng(seed)
    factor, error_rate = SCENARIOS[scenario]
    width = BOUNDS.size + 1
    arms = {"baseline": np.zeros(width), "canary": np.zeros(width)}
    requests = {"baseline": 0, "canary": 0}
    errors = {"baseline": 0, "canary": 0}
    silent = int(rng.integers(0, 4))  # looks before the first request (no histogram yet)
    out = []
    for k in range(1, count + 1):
        t = k * EVERY_S
        burst = 3.0 if rng.random() < 0.1 else 1.0
        for arm, share in (("baseline", 1 - weight / 100), ("canary", weight / 100)):
            if k <= silent:
                continue
            n = int(rng.poisson(30 * EVERY_S * share))
            scale = burst * (factor(t) if arm == "canary" else 1.0)
            values = 0.02 * scale * rng.lognormal(0.0, 0.35, n)
            arms[arm] += np.bincount(np.searchsorted(BOUNDS, values, side="left"), minlength=width)
            requests[arm] += n
            rate = error_rate(t) if arm == "canary" else 0.005
            errors[arm] += int(rng.binomial(n, rate))

        def arm_obs(arm: str) -> ArmObservations:
            if requests[arm] == 0:
                return ArmObservations()
            cumulative = np.cumsum(arms[arm])
            latency = Histogram(
                bounds=list(BOUNDS), counts=[int(c) for c in cumulative[:-1]], total=int(cumulative[-1])
            )
            return ArmObservations(requests=requests[arm], errors=errors[arm], latency_s=latency)

        out.append(Observations(elapsed_s=t, baseline=arm_obs("baseline"), canary=arm_obs("canary")))
    return out


def _ticks(rng: np.random.Generator, count: int) -> list[int]:
    """Where each tick's reading ends: one look mostly, now and then several (a slow tick)."""
    ends, at = [], 0
    while at < count:
        at = min(count, at + int(rng.choice([1, 1, 1, 2, 3, 7])))
        ends.append(at)
    return ends


def _same(incremental: StepAnalysis, full_looks: list[Observations], policy: Policy, **kw: object) -> None:
    expected = analyze_looks(policy, full_looks, **kw)  # type: ignore[arg-type]
    assert incremental.result is not None
    assert incremental.result.status == expected.status
    assert incremental.result.verdict.model_dump_json() == expected.verdict.model_dump_json()  # as stored


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("seed", range(3))
def test_judging_only_the_new_looks_decides_as_judging_them_all(scenario: str, seed: int) -> None:
    policy = _policy()
    step_index = seed % 2
    looks = _looks(1000 * seed + len(scenario), scenario, 60, policy.steps[step_index].weight)
    rng = np.random.default_rng(seed)
    ends = _ticks(rng, len(looks))
    checkpoints = set(rng.choice(ends, size=min(2, len(ends)), replace=False).tolist())
    restart_at = int(rng.choice(ends))
    state, read = StepAnalysis(step_index=step_index), 0
    for end in ends:
        if end == restart_at:  # a restarted controller: the state rebuilt from the looks read so far
            state = advance(policy, StepAnalysis(step_index=step_index), looks[:read])
        state = advance(policy, state, looks[read:end])
        read = end
        if end in checkpoints or state.decided:
            _same(state, looks[:end], policy, step_index=step_index)
        if state.decided:
            break
    _same(state, looks[:read], policy, step_index=step_index)
    assert state.verdict_look is not None
    decided_at = state.result.verdict.decided_at_s if state.result else None
    assert state.verdict_look.elapsed_s == (
        decided_at if decided_at is not None else looks[read - 1].elapsed_s
    )


@pytest.mark.parametrize("seed", range(2))
def test_a_bake_judges_only_its_own_looks_and_decides_the_same(seed: int) -> None:
    policy = _policy()
    scenario = ("same", "late regression")[seed % 2]
    looks = _looks(seed, scenario, 90, policy.steps[-1].weight)
    judged_from, hold = 30, 30 * EVERY_S + policy.bake_s
    kw = {"step_index": len(policy.steps) - 1, "hold_until_s": hold}
    state = StepAnalysis(**kw, judge_after_s=judged_from * EVERY_S)  # type: ignore[arg-type]
    read = 0
    for end in _ticks(np.random.default_rng(seed), len(looks)):
        state = advance(policy, state, looks[read:end])
        read = end
        if end <= judged_from:
            assert state.result is None  # nothing of the bake's own yet
        if state.decided:
            break
    _same(state, looks[:read], policy, from_look=judged_from, **kw)


def test_a_decided_state_stands_whatever_comes_next() -> None:
    policy = _policy()
    looks = _looks(7, "errors", 60, policy.steps[0].weight)
    state = advance(policy, StepAnalysis(), looks[:50])
    assert state.decided
    assert advance(policy, state, looks[50:]) is state


def test_appending_series_builds_what_reading_them_all_at_once_builds() -> None:
    """Histograms an arm lacks in one part, a metric's own series only one part has, shadow
    distances: `concat` of two parts equals `from_observations` of all readings."""
    rng = np.random.default_rng(3)

    def reading(t: float, own: bool, canary_latency: bool) -> Observations:
        def hist(bounds: tuple[float, ...]) -> Histogram:
            counts = np.cumsum(rng.integers(0, 5, len(bounds)))
            return Histogram(bounds=list(bounds), counts=[int(c) for c in counts], total=int(counts[-1]) + 2)

        arm = ArmObservations(requests=50, errors=1, latency_s=hist(DEFAULT_LATENCY_BUCKETS_S))
        canary = ArmObservations(
            requests=5,
            latency_s=hist(DEFAULT_LATENCY_BUCKETS_S) if canary_latency else None,
            gpu_memory_bytes=3.0,
        )
        per_metric = {"ttft": MetricArms(baseline=arm, canary=canary)} if own else {}
        return Observations(
            elapsed_s=t,
            baseline=arm,
            canary=canary,
            shadow_distance=hist(DEFAULT_SHADOW_BUCKETS) if canary_latency else None,
            per_metric=per_metric,
        )

    first = [reading(5.0 * k, own=k > 2, canary_latency=False) for k in range(1, 5)]
    then = [reading(5.0 * k, own=k < 7, canary_latency=True) for k in range(5, 9)]
    joined = concat(ObservationSeries.from_observations(first), ObservationSeries.from_observations(then))
    assert _arrays(joined) == _arrays(ObservationSeries.from_observations(first + then))


def _arrays(series: ObservationSeries) -> dict[str, object]:
    """Every array of a series as nested lists (NaN as None), for an equality that says where it differs."""
    out: dict[str, object] = {}
    for name in ("elapsed_s", "latency_bounds", "shadow_bounds", "shadow_counts", "shadow_totals"):
        out[name] = _plain(getattr(series, name))
    for arm in ("baseline", "canary"):
        for name in ("requests", "errors", "latency_counts", "latency_totals", "gpu_memory"):
            out[f"{arm}.{name}"] = _plain(getattr(getattr(series, arm), name))
    for metric, own in series.per_metric.items():
        out[metric] = _arrays(own)
    return out


def _plain(values: np.ndarray | None) -> object:
    if values is None:
        return None
    return np.where(np.isnan(values), -1.0, values).tolist()
