"""Replaying a request log through the engine as if it were live (pure: arrays in, verdict out).

Every `policy.evaluate_every_s` of log time the engine sees what both arms served since the log
started, bucketed the way the inference server's Prometheus histogram buckets it; the first decisive
look is the verdict, and nothing after it is used. Looks are evaluated in blocks so a log decided in
its first minute costs a minute's work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from canaryflow.kernel.analysis.judge import SeriesEvaluation, evaluate_series, warmup_end_look
from canaryflow.kernel.analysis.observations import DEFAULT_LATENCY_BUCKETS_S
from canaryflow.kernel.analysis.series import ArmSeries, FloatArray, ObservationSeries
from canaryflow.kernel.types import Verdict

if TYPE_CHECKING:
    from policies.model import Policy  # the policy package reads the kind table: no import back

_BLOCK = 48  # looks evaluated per vectorised call


@dataclass(frozen=True)
class RequestLog:
    """A request log as columns: time (s), served by the canary, latency (s), succeeded."""

    t: FloatArray
    canary: NDArray[np.bool_]
    latency_s: FloatArray
    ok: NDArray[np.bool_]

    def __post_init__(self) -> None:
        n = self.t.shape[0]
        if not (self.canary.shape[0] == self.latency_s.shape[0] == self.ok.shape[0] == n):
            raise ValueError("request log columns differ in length")

    def sorted(self) -> RequestLog:
        if np.all(np.diff(self.t) >= 0):
            return self
        order = np.argsort(self.t, kind="stable")
        return RequestLog(self.t[order], self.canary[order], self.latency_s[order], self.ok[order])


class _ArmCumulative:
    """One arm's cumulative counts at arbitrary times, from per-look increments computed once."""

    def __init__(
        self, log: RequestLog, mask: NDArray[np.bool_], looks: FloatArray, bounds: FloatArray
    ) -> None:
        t = log.t[mask]
        # Look j sees the requests with t <= looks[j].
        segment = np.searchsorted(looks, t, side="left")
        keep = segment < looks.shape[0]
        segment = segment[keep]
        bucket = np.searchsorted(bounds, log.latency_s[mask][keep], side="left")  # le: value <= bound
        n_looks, n_bounds = looks.shape[0], bounds.shape[0]
        per_look = np.bincount(segment * (n_bounds + 1) + bucket, minlength=n_looks * (n_bounds + 1))
        per_look = per_look.reshape(n_looks, n_bounds + 1).astype(float)
        cumulative = np.cumsum(per_look, axis=0)
        self.requests = cumulative.sum(axis=1)
        self.latency_counts = np.cumsum(cumulative, axis=1)[:, :n_bounds].astype(float)
        errors = np.bincount(segment, weights=(~log.ok[mask][keep]).astype(float), minlength=n_looks)
        self.errors = np.cumsum(errors).astype(float)

    def arm(self, sl: slice) -> ArmSeries:
        return ArmSeries(
            requests=self.requests[sl],
            errors=self.errors[sl],
            latency_counts=self.latency_counts[sl],
            latency_totals=self.requests[sl],
        )


def look_times(start: float, end: float, every_s: float, max_duration_s: float) -> FloatArray:
    """Log times of the engine's looks: every `every_s`, the log's end, and the policy's deadline."""
    stop = min(end, start + max_duration_s)
    grid = start + every_s * np.arange(1, int(np.floor((stop - start) / every_s + 1e-9)) + 1)
    extra = [stop] if grid.size == 0 or grid[-1] < stop - 1e-9 else []
    return np.concatenate([grid, np.asarray(extra, dtype=float)])


def replay_log(
    policy: Policy,
    log: RequestLog,
    *,
    step_index: int = 0,
    canary_weight: float | None = None,
    start_s: float | None = None,
    bounds_s: Sequence[float] = DEFAULT_LATENCY_BUCKETS_S,
    bake_s: float = 0.0,
    hold_until_s: float | None = None,
    recorded_baseline: bool = False,
) -> Verdict:
    """The verdict the engine reaches on this log; `decided_at_s` is in the log's own time.

    `bake_s`: after the step passes, the analysis goes on that long on the same log; a failing look
    in it rolls back, else the verdict promotes at its end. `hold_until_s`: a watch (the engine's
    hold mode): fails on a failing look, passes at that time; with `recorded_baseline` its baseline
    requests are the previous champion's record. A log that ends before a decision
    gives decision "inconclusive" with `decided_at_s` null and the last look's checks.
    """
    log = log.sorted()
    if log.t.shape[0] == 0:
        raise ValueError("the request log holds no requests")
    # By default the step starts on the look grid just before the first request (0 for logs that
    # count from 0), so looks fall on round log times.
    every = policy.evaluate_every_s
    start = float(np.floor(log.t[0] / every) * every) if start_s is None else float(start_s)
    horizon = policy.max_duration_s + bake_s if hold_until_s is None else hold_until_s
    looks = look_times(start, float(log.t[-1]), every, horizon)
    if looks.size == 0:
        looks = np.asarray([start], dtype=float)
    bounds = np.asarray(bounds_s, dtype=float)
    canary = _ArmCumulative(log, log.canary, looks, bounds)
    baseline = _ArmCumulative(log, ~log.canary, looks, bounds)
    last = None
    passed_at: float | None = None
    # The looks inside the warm-up decide nothing: start judging after it (the last look at least).
    everything = ObservationSeries(
        elapsed_s=looks - start, baseline=baseline.arm(slice(None)), canary=canary.arm(slice(None))
    )
    skip = min(warmup_end_look(policy, everything, step_index) + 1, looks.shape[0] - 1)
    for first in range(skip, looks.shape[0], _BLOCK):
        sl = slice(0, min(first + _BLOCK, looks.shape[0]))  # the block, and the looks before it
        series = ObservationSeries(
            elapsed_s=looks[sl] - start,
            baseline=baseline.arm(sl),
            canary=canary.arm(sl),
            latency_bounds=bounds,
        )
        evaluation = evaluate_series(
            policy,
            series,
            step_index=step_index,
            canary_weight=canary_weight,
            hold_until_s=hold_until_s,
            from_look=first,
            recorded_baseline=recorded_baseline,
        )
        last = evaluation
        if passed_at is None:
            decided = evaluation.first_decision()
            if decided is None:
                continue
            if evaluation.status_at(decided) != "pass" or bake_s <= 0:
                return evaluation.verdict_at(decided, time_offset_s=start)
            passed_at = float(evaluation.elapsed_s[decided])
        ended = _bake_end(evaluation, passed_at, bake_s)
        if ended is not None:
            return ended.model_copy(update={"decided_at_s": (ended.decided_at_s or 0.0) + start})
    assert last is not None
    return last.verdict_at(len(last.elapsed_s) - 1, time_offset_s=start)


def _bake_end(evaluation: SeriesEvaluation, passed_at: float, bake_s: float) -> Verdict | None:
    """The bake's verdict if it ends within these looks: its first failing look, or its last look."""
    elapsed = evaluation.elapsed_s
    in_bake = (elapsed > passed_at) & (elapsed <= passed_at + bake_s + 1e-9)
    failing = np.flatnonzero(in_bake & evaluation.failing)
    if failing.size:
        i = int(failing[0])
        return evaluation.verdict_at(i).model_copy(update={"decision": "rollback"})
    done = np.flatnonzero(elapsed >= passed_at + bake_s - 1e-9)
    if done.size:
        i = int(done[0])
        return evaluation.verdict_at(i).model_copy(
            update={"decision": "promote", "decided_at_s": float(elapsed[i])}
        )
    return None
