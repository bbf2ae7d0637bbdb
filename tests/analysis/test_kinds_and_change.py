"""The metric-kind table, the warm-up, change over time and verdicts in words."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from canaryflow.kernel.analysis import (
    DEFAULT_LATENCY_BUCKETS_S,
    ArmObservations,
    Histogram,
    Observations,
    analyze,
    analyze_looks,
    judge,
)
from canaryflow.kernel.analysis.kinds import METRIC_KINDS, CheckSeries, Levels, MetricSpec
from canaryflow.kernel.analysis.kinds.base import MetricKind, compare
from canaryflow.kernel.analysis.observations import MetricArms
from canaryflow.kernel.analysis.replay import RequestLog, replay_log
from canaryflow.kernel.analysis.sequential import binomial_cs
from canaryflow.kernel.analysis.series import ObservationSeries
from canaryflow.kernel.analysis.wording import describe
from canaryflow.kernel.types import Verdict
from policies import PolicyError, load_policy, parse_policy

POLICY = load_policy("default")


def test_an_unknown_kind_is_refused_at_load_naming_the_field() -> None:
    doc = {"steps": [{"weight": 10}], "metrics": [{"name": "x", "kind": "p99_latency", "tolerance": 0.1}]}
    with pytest.raises(PolicyError, match=r"metrics\[0\]\.kind: unknown metric kind 'p99_latency' \(known: "):
        parse_policy(doc)


SLO_S = 0.05  # the example kind's bound: share of requests slower than 50 ms


def _slow_share(metric: MetricSpec, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
    """An example kind on data the series already has: the share of requests beyond an SLO."""
    assert series.latency_bounds is not None
    k = int(np.searchsorted(series.latency_bounds, SLO_S))
    totals, slow = [], []
    for arm in (series.canary, series.baseline):
        assert arm.latency_totals is not None and arm.latency_counts is not None
        totals.append(arm.latency_totals)
        slow.append(arm.latency_totals - arm.latency_counts[:, k])
    by_level = {}
    for level, a in levels.per_arm().items():
        (c_lo, c_hi), (b_lo, b_hi) = (binomial_cs(s, n, a) for s, n in zip(slow, totals, strict=True))
        by_level[level] = (c_lo, c_hi, b_lo, b_hi)
    rates = [s / np.maximum(n, 1) for s, n in zip(slow, totals, strict=True)]
    has = np.asarray((totals[0] > 0) & (totals[1] > 0), dtype=bool)
    return [compare(metric, "difference", metric.name, has, by_level, rates[0], rates[1])]


def test_a_new_kind_is_one_evaluator_and_one_table_line(monkeypatch: pytest.MonkeyPatch) -> None:
    kind = MetricKind("slow_share", "difference", True, False, _slow_share, lambda r: f"{r:.1%}", "example")
    monkeypatch.setitem(METRIC_KINDS, "slow_share", kind)
    policy = parse_policy(
        {
            "steps": [{"weight": 10}],
            "metrics": [{"name": "slow", "kind": "slow_share", "tolerance": 0.02, "alternative": 0.05}],
        }
    )
    rng = np.random.default_rng(4)

    def arm(n: int, median_s: float) -> ArmObservations:
        values = rng.lognormal(np.log(median_s), 0.35, n)
        return ArmObservations(requests=n, latency_s=Histogram.from_values(values, DEFAULT_LATENCY_BUCKETS_S))

    slower = analyze(policy, Observations(elapsed_s=600, baseline=arm(18000, 0.02), canary=arm(2000, 0.03)))
    same = analyze(policy, Observations(elapsed_s=600, baseline=arm(18000, 0.02), canary=arm(2000, 0.02)))
    assert (slower.status, same.status) == ("fail", "pass")
    assert (
        slower.verdict.checks[0].reason.startswith("slow ")
        and "tolerance +2.00 pt" in slower.verdict.checks[0].reason
    )


def _log(seed: int, factor, duration: float = 900.0, rps: float = 40.0) -> RequestLog:
    """10% canary; `factor(t)` multiplies the canary's latency at time t."""
    rng = np.random.default_rng(seed)
    n = int(rps * duration)
    t = np.sort(rng.uniform(0, duration, n))
    canary = rng.random(n) < 0.1
    latency = rng.lognormal(np.log(0.02), 0.35, n) * np.where(canary, factor(t), 1.0)
    return RequestLog(t=t, canary=canary, latency_s=latency, ok=rng.random(n) >= 0.005)


def test_a_cold_start_within_the_warm_up_is_not_a_regression() -> None:
    cold = _log(5, lambda t: np.where(t < 110, 3.0, 1.0))
    assert replay_log(POLICY, cold, start_s=0.0).decision == "promote"
    no_warmup = POLICY.model_copy(
        update={"steps": [s.model_copy(update={"warmup_s": 0.0}) for s in POLICY.steps]}
    )
    assert replay_log(no_warmup, cold, start_s=0.0).decision == "rollback"


def test_a_regression_that_starts_after_the_pass_is_caught_in_the_bake() -> None:
    # Identical until 400 s (the step passes), then 60% slower: the bake rolls it back.
    log = _log(6, lambda t: np.where(t < 400, 1.0, 1.6), duration=1500)
    passed = replay_log(POLICY, log, start_s=0.0)
    assert passed.decision == "promote" and passed.decided_at_s is not None and passed.decided_at_s < 400
    baked = replay_log(POLICY.model_copy(update={"bake_s": 900.0}), log, start_s=0.0, bake_s=900.0)
    assert baked.decision == "rollback" and baked.decided_at_s is not None and baked.decided_at_s > 400
    failing = [c for c in baked.checks if c.verdict == "fail"]
    assert failing and all((c.model_extra or {}).get("cause") in (1.0, 2.0, 3.0) for c in failing)


def test_checks_read_in_words_with_units() -> None:
    stats = {
        "canary": 0.182,
        "baseline": 0.177,
        "worse_estimate": 0.028,
        "worse_lower": -0.041,
        "worse_upper": 0.12,
    }
    text = describe("latency_p95", "latency", stats, 0.10, 0.25, "pass")
    assert (
        text == "latency p95 182 ms vs 177 ms baseline: +2.8%; upper bound +12.0% < alternative +25.0%: pass"
    )
    trend = describe("latency_p50", "latency", {**stats, "cause": 3, "trend_lower": 0.06}, 0.10, 0.25, "fail")
    assert trend.endswith("; trend: grown by at least +6.0% since the earlier windows (> +5.0%): fail")


def test_words_show_the_bound_each_decision_uses() -> None:
    """A reader checks the verdict against the numbers on the same line (issue 30's demo line:
    a lower bound far above the tolerance and no decision, because rollback uses another bound)."""
    demo = {
        "canary": 0.0478, "baseline": 0.0251, "worse_estimate": 0.909, "worse_lower": 0.245,
        "worse_upper": 1.981, "worse_than_baseline_lower": -0.03,
    }  # fmt: skip
    text = describe("latency_p50", "latency", demo, 0.10, 0.25, "inconclusive")
    assert "rollback needs the lower bound above the tolerance +10.0% (+24.5%)" in text
    assert "and above 0 at the stricter level (−3.0%)" in text
    assert "promotion the upper bound below the alternative +25.0% (+198.1%)" in text
    assert text.endswith("not decided yet (not yet shown worse than the baseline at the stricter level)")
    fading = {**demo, "worse_than_baseline_lower": 0.05, "recent_worse_estimate": 0.04}
    assert "(the second half shows +4.0%: an excess that fades is not a failure)" in describe(
        "latency_p50", "latency", fading, 0.10, 0.25, "inconclusive"
    )
    failed = describe(
        "error_rate", "error_rate",
        {**demo, "canary": 0.03, "baseline": 0.005, "worse_estimate": 0.025, "worse_lower": 0.012,
         "worse_than_baseline_lower": 0.008, "recent_worse_estimate": 0.024},
        0.005, 0.02, "fail",
    )  # fmt: skip
    assert failed.endswith(
        "lower bound +1.20 pt > tolerance +0.50 pt; +0.80 pt > 0 at the stricter level;"
        " second half +2.40 pt: fail"
    )
    window = describe(
        "latency_p95", "latency",
        {**demo, "cause": 2, "window_worse_estimate": 0.4, "window_worse_lower": 0.15}, 0.10, 0.25, "fail",
    )  # fmt: skip
    assert window.endswith(
        "latest window +40.0% shown beyond the tolerance: lower bound +15.0% > +10.0%: fail"
    )


def _reading(log: RequestLog, start: float, end: float) -> Observations:
    """What a metrics source answers for `since=start` at time `end`."""

    def arm(mask: np.ndarray) -> ArmObservations:
        m = mask & (log.t > start) & (log.t <= end)
        hist = Histogram.from_values(log.latency_s[m], DEFAULT_LATENCY_BUCKETS_S)
        return ArmObservations(requests=int(m.sum()), errors=int((~log.ok[m]).sum()), latency_s=hist)

    return Observations(elapsed_s=end - start, baseline=arm(~log.canary), canary=arm(log.canary))


def _numbers(verdict: Verdict) -> dict[str, object]:
    """A verdict without its null figures: which ones are null depends on how many looks after the
    decisive one were judged with it (the replay judges them in blocks); the per-look evidence is
    the live step's alone."""
    data = verdict.model_dump(exclude={"evidence"})
    data["checks"] = [{k: v for k, v in c.items() if v is not None} for c in data["checks"]]
    return data


def test_live_readings_at_every_look_decide_as_the_replay_of_the_same_log() -> None:
    # Identical for 600 s, then 60% slower: the step passes early; held on (a bake), it fails once
    # the slowdown shows.
    log = _log(8, lambda t: np.where(t < 600, 1.0, 1.6), duration=900, rps=60)
    policy = POLICY.model_copy(
        update={"steps": [s.model_copy(update={"warmup_s": 0.0}) for s in POLICY.steps]}
    )
    every = policy.evaluate_every_s
    looks = [_reading(log, 0.0, every * k) for k in range(1, int(900 / every) + 1)]
    step = analyze_looks(policy, looks)
    assert step.status == "pass"
    assert _numbers(step.verdict) == _numbers(replay_log(policy, log, start_s=0.0))
    held = analyze_looks(policy, looks, hold_until_s=900.0)
    replayed = replay_log(policy, log, start_s=0.0, hold_until_s=900.0)
    assert _numbers(held.verdict) == _numbers(replayed)  # the same look, every number
    assert held.status == "fail"
    assert any(c.verdict == "fail" and c.metric.startswith("latency") for c in held.verdict.checks)
    decided = held.verdict.decided_at_s
    assert decided is not None and 600 < decided < 900
    # Looks after the decision change nothing: a step restarted later decides the same.
    assert analyze_looks(policy, looks[: round(decided / every)], hold_until_s=900.0) == held
    # Judged only from a later look on (a bake after its step), the first failing look from there.
    later = analyze_looks(policy, looks, hold_until_s=900.0, from_look=round(decided / every) + 5)
    assert later.status == "fail" and (later.verdict.decided_at_s or 0) >= decided + 6 * every


def test_a_live_verdict_carries_each_checks_estimate_and_bounds_at_every_look_up_to_its_decision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = _log(8, lambda t: np.where(t < 600, 1.0, 1.6), duration=900, rps=60)
    policy = POLICY.model_copy(
        update={"steps": [s.model_copy(update={"warmup_s": 0.0}) for s in POLICY.steps]}
    )
    every = policy.evaluate_every_s
    looks = [_reading(log, 0.0, every * k) for k in range(1, int(900 / every) + 1)]
    held = analyze_looks(policy, looks, hold_until_s=900.0)
    evidence = {e.metric: e for e in held.verdict.evidence or []}
    checks = {c.metric: c for c in held.verdict.checks}
    assert evidence and set(evidence) <= set(checks)
    failed = next(m for m, c in checks.items() if c.verdict == "fail" and m in evidence)
    series = evidence[failed]
    # Every look judged, up to the decisive one, whose figures are the verdict's own.
    assert series.elapsed_s[-1] == held.verdict.decided_at_s
    assert len(series.elapsed_s) == min(judge.EVIDENCE_POINTS, len(looks))
    assert series.elapsed_s == sorted(series.elapsed_s)
    last = checks[failed].model_dump()
    assert (series.estimate[-1], series.lower[-1], series.upper[-1]) == (
        last["worse_estimate"],
        last["worse_lower"],
        last["worse_upper"],
    )
    assert series.lower[-1] is not None and series.lower[-1] > series.tolerance  # why it failed
    early = [lo for t, lo in zip(series.elapsed_s, series.lower, strict=True) if t < 500]
    assert early and all(lo is None or lo <= series.tolerance for lo in early)  # same speed: no fail
    # Thinned evenly when the step had more looks than are kept, the first and the decisive one kept.
    monkeypatch.setattr(judge, "EVIDENCE_POINTS", 7)
    thin = {e.metric: e for e in analyze_looks(policy, looks, hold_until_s=900.0).verdict.evidence or []}
    assert len(thin[failed].elapsed_s) == 7
    assert (thin[failed].elapsed_s[0], thin[failed].elapsed_s[-1]) == (
        series.elapsed_s[0],
        series.elapsed_s[-1],
    )


def _every_bound_both_sides(
    counts: Any, totals: Any, alpha: Any, quantiles: Any, prior: float, **sides: Any
) -> tuple[Any, Any]:
    """`cdf_cs_for_quantiles` as the full search: every bucket bound, both sides."""
    from canaryflow.kernel.analysis.sequential import cdf_cs

    return cdf_cs(counts, totals, alpha, prior)


@pytest.mark.parametrize(
    ("policy_name", "metric_name", "direction"),
    [
        ("default", "latency", None),
        ("default", "latency", "higher_is_better"),
        ("default", "error_rate", None),
        ("llm", "decode_speed", None),  # a reciprocal quantity, higher is better
        ("llm", "truncated", None),  # a finish reason, a difference of rates
    ],
)
def test_searching_only_the_bounds_a_check_reads_changes_none_of_its_numbers(
    policy_name: str, metric_name: str, direction: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of each arm and level an evaluator searches only the bound `compare` reads (`bounds_read`), and
    of a latency's CDF only the bucket bounds its quantiles read (`cdf_cs_for_quantiles`): every
    statistic and verdict is the one searching every bound on both sides gives, whichever way the
    metric reads."""
    from canaryflow.kernel.analysis.kinds import error_rate, latency
    from canaryflow.kernel.analysis.paired import pair_by_time
    from tests.analysis.test_incremental import _looks

    metric = next(m for m in load_policy(policy_name).metrics if m.name == metric_name)
    if direction is not None:
        metric = metric.model_copy(update={"direction": direction})
    levels = Levels(same=0.0025, tolerance=0.0125, promote=0.05, prior_strength=300.0)
    kind = METRIC_KINDS[metric.kind]
    for scenario in ("same", "slower", "errors"):
        looks = _looks(5, scenario, 40, 10.0)
        if metric.kind == "finish_reason":  # its own series: the arms' errors read as the reason
            own = [MetricArms(baseline=look.baseline, canary=look.canary) for look in looks]
            looks = [
                look.model_copy(update={"per_metric": {metric.name: arms}})
                for look, arms in zip(looks, own, strict=True)
            ]
        series = pair_by_time(ObservationSeries.from_observations(looks))
        judged = series.per_metric.get(metric.name, series)
        with monkeypatch.context() as both_sides:
            both_sides.setattr(error_rate, "binomial_cs", lambda *a, **kw: binomial_cs(*a[:4]))
            both_sides.setattr(latency, "cdf_cs_for_quantiles", _every_bound_both_sides)
            expected = kind.evaluate(metric, judged, levels)
        for want, got in zip(expected, kind.evaluate(metric, judged, levels), strict=True):
            assert want.stats.keys() == got.stats.keys()
            for name in want.stats:
                assert np.array_equal(want.stats[name], got.stats[name], equal_nan=True), name
            assert np.array_equal(want.fails, got.fails) and np.array_equal(want.passes, got.passes)
