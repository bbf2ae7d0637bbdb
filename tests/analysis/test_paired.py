"""Latencies paired by time: a slowdown common to both arms cancels, a difference between them stays."""

from __future__ import annotations

import numpy as np

from canaryflow.kernel.analysis.kinds import METRIC_KINDS, Levels
from canaryflow.kernel.analysis.observations import DEFAULT_LATENCY_BUCKETS_S
from canaryflow.kernel.analysis.paired import pair_by_time
from canaryflow.kernel.analysis.replay import RequestLog, look_times, replay_log
from canaryflow.kernel.analysis.replay import _ArmCumulative as ArmCumulative
from canaryflow.kernel.analysis.series import ArmSeries, ObservationSeries
from policies import load_policy

POLICY = load_policy("default")
BOUNDS = np.asarray(DEFAULT_LATENCY_BUCKETS_S)
STEP = 10 ** (1 / 26)  # the ratio of two adjacent bucket bounds


def _log(seed: int, seconds: float, rps: float, canary_factor: float, bursts: bool) -> RequestLog:
    """Poisson arrivals, 10% to the canary; with `bursts`, both arms 3x slower 10 s in every 2 minutes."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.0, seconds, rng.poisson(rps * seconds)))
    canary = rng.random(t.size) < 0.10
    latency = rng.lognormal(np.log(0.020), 0.35, t.size)
    if bursts:
        latency = np.where(t % 120.0 < 10.0, 3.0 * latency, latency)
    latency = np.where(canary, latency * canary_factor, latency)
    return RequestLog(t=t, canary=canary, latency_s=latency, ok=np.ones(t.size, dtype=bool))


def _series(log: RequestLog, seconds: float) -> ObservationSeries:
    looks = look_times(0.0, seconds, POLICY.evaluate_every_s, seconds)
    arms = {
        arm: ArmCumulative(log, mask, looks, BOUNDS) for arm, mask in (("c", log.canary), ("b", ~log.canary))
    }
    return ObservationSeries(
        elapsed_s=looks,
        canary=arms["c"].arm(slice(None)),
        baseline=arms["b"].arm(slice(None)),
        latency_bounds=BOUNDS,
    )


def _p95(series: ObservationSeries) -> dict[str, float]:
    """The p95 check's estimate and promotion bound at the last look."""
    metric = next(m for m in POLICY.metrics if m.kind == "latency")
    check = METRIC_KINDS["latency"].evaluate(
        metric, series, Levels(same=0.001, tolerance=0.01, promote=0.05)
    )[1]
    return {
        name: float(check.stats[name][-1]) for name in ("worse_estimate", "worse_upper", "canary", "baseline")
    }


def test_pairing_keeps_every_request_and_shifts_both_arms_of_an_interval_alike() -> None:
    series = _series(_log(1, 600.0, 20.0, 1.0, bursts=True), 600.0)
    paired = pair_by_time(series)
    for raw, arm in ((series.canary, paired.canary), (series.baseline, paired.baseline)):
        assert arm.paired_counts is not None and raw.latency_counts is not None
        assert arm.latency_counts is not None
        assert np.array_equal(arm.latency_counts, raw.latency_counts)  # the pooled counts stay for reporting
        assert np.all(np.diff(arm.paired_counts, axis=0) >= 0) and np.all(
            np.diff(arm.paired_counts, axis=1) >= 0
        )
        # Nothing is lost: a 20-200 ms request stays between the first and last bound after its shift.
        assert np.array_equal(arm.paired_counts[:, -1], raw.latency_counts[:, -1])


def test_a_common_burst_cancels_so_the_p95_bound_is_much_tighter() -> None:
    series = _series(_log(2, 300.0, 20.0, 1.0, bursts=True), 300.0)
    pooled, paired = _p95(series), _p95(pair_by_time(series))
    # Pooled, the p95 sits in the gap between the burst's mode and the steady one: wide bounds, beyond
    # the +25% alternative after 5 minutes at 2 canary requests/s; paired, well within it.
    assert pooled["worse_upper"] > 0.30 > 0.20 > paired["worse_upper"]
    assert (paired["canary"], paired["baseline"]) == (pooled["canary"], pooled["baseline"])  # pooled, in ms


def test_a_canary_slower_at_every_moment_stays_that_much_slower() -> None:
    factor = STEP**3  # three buckets: +30.4%, read exactly on the histogram
    paired = _p95(pair_by_time(_series(_log(3, 1200.0, 200.0, factor, bursts=True), 1200.0)))
    assert abs(paired["worse_estimate"] - (factor - 1)) < 0.05


def test_the_engine_promotes_a_bursty_same_version_canary_and_rolls_back_a_slower_one() -> None:
    same = replay_log(POLICY, _log(4, 1800.0, 20.0, 1.0, bursts=True), start_s=0.0)
    slower = replay_log(POLICY, _log(5, 1800.0, 20.0, 1.5, bursts=True), start_s=0.0)
    assert same.decision == "promote" and same.decided_at_s is not None and same.decided_at_s < 900.0
    assert slower.decision == "rollback"
    p95 = next(c for c in same.checks if c.metric == "latency_p95")
    assert "same moments" in (p95.reason or "")


def test_pairing_only_the_new_looks_gives_what_pairing_them_all_gives() -> None:
    """A live step pairs only the intervals after the looks it kept (`known`): the same paired counts
    as pairing the whole series, whether the kept looks placed a median or not, and for a quiet
    interval after them (2 requests/s: under the pairing minimum, it keeps the last shift placed)."""
    parts = [(60.0, 2.0), (240.0, 30.0), (60.0, 2.0), (240.0, 30.0)]  # (seconds, requests/s)
    logs, offset = [], 0.0
    for seed, (seconds, rps) in enumerate(parts):
        part = _log(4 + seed, seconds, rps, 1.2, bursts=True)
        logs.append((part, offset))
        offset += seconds
    log = RequestLog(
        t=np.concatenate([part.t + at for part, at in logs]),
        canary=np.concatenate([part.canary for part, _ in logs]),
        latency_s=np.concatenate([part.latency_s for part, _ in logs]),
        ok=np.ones(sum(part.t.size for part, _ in logs), dtype=bool),
    )
    whole = _series(log, offset)
    expected = pair_by_time(whole)
    assert expected.canary.paired_counts is not None
    for kept in (1, 3, 11, 12, 13, 50, 60, 61, 64, 70, len(whole) - 1):
        known = pair_by_time(_prefix(whole, kept))
        for more in (1, 4):
            end = min(kept + more, len(whole))
            paired = pair_by_time(_prefix(whole, end), known)
            for arm, want in ((paired.canary, expected.canary), (paired.baseline, expected.baseline)):
                assert arm.paired_counts is not None and want.paired_counts is not None
                assert np.array_equal(arm.paired_counts, want.paired_counts[:end])
    assert pair_by_time(expected) is expected  # paired already: as it is


def _prefix(series: ObservationSeries, looks: int) -> ObservationSeries:
    def arm(a: ArmSeries) -> ArmSeries:
        assert a.latency_counts is not None and a.latency_totals is not None
        return ArmSeries(
            requests=a.requests[:looks],
            errors=a.errors[:looks],
            latency_counts=a.latency_counts[:looks],
            latency_totals=a.latency_totals[:looks],
        )

    return ObservationSeries(
        elapsed_s=series.elapsed_s[:looks],
        canary=arm(series.canary),
        baseline=arm(series.baseline),
        latency_bounds=series.latency_bounds,
    )
