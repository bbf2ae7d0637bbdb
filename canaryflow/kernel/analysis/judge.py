"""From observations to a verdict: warm-up, checks per metric, change over time, the guards.

Error budget. A step fails (rollback) if any check fails, so the false-rollback budget alpha is
split evenly over the policy's statistical checks and over its phases (its steps, plus the watch
after promotion when the policy has one): Bonferroni, a same-as-baseline canary is rolled back if any
one of them errs. Half of each share goes to the cumulative checks, half to the change-over-time
checks (below). A rollout is promoted only if every check of every step passes, so a canary at the
alternative in some metric is promoted only if that metric's own check errs: the false-promotion
budget beta needs no split (an intersection-union test). A two-arm check gives each arm's
confidence sequence half of its share.

A check bounds "how much worse the canary is" (relative increase, or rate difference). It fails
when that is shown above 0 at the split false-rollback level and above `tolerance` at the level
`false_rollback_at_tolerance` (split over the phases), and the second half of the data since the
warm-up still puts the canary beyond the tolerance (a fading transient — a cold start longer than
the warm-up — does not condemn it). It passes when the upper bound at the promotion level is below
`alternative`. Failing wins if both hold.

Warm-up. A step's first `warmup_s` (from the step start, or from the canary's first served request)
are left out: every count is taken since the warm-up ended. Readiness is not enough on a GPU.

Change over time. The data since the warm-up is cut into windows of `change_window_s`. When a window
completes it is judged on its own ("latest window": shown beyond the tolerance against the
baseline's same window) and against the earlier windows pooled ("trend": the canary's excess over
the baseline shown to have grown by more than half the tolerance). Each is a fixed-time bound from
the same confidence sequences, at its share split over the windows a phase can hold (Bonferroni
spent per window), so a canary whose difference does not change is rolled back by them at most at
that share. They are what rolls back a leak that the cumulative check, averaging its good start,
still passes: over a bake before promotion and a watch after it (`bake_s`, `watch_s`).

Watch. After promotion the previous champion serves nothing; its requests recorded during the last
step are the baseline (`recorded_baseline`). That comparison is not concurrent, so it is made once,
at the watch's end, on everything the new champion served since its warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from canaryflow.kernel.analysis.kinds import METRIC_KINDS, CheckSeries, Levels
from canaryflow.kernel.analysis.kinds.base import no_data
from canaryflow.kernel.analysis.paired import pair_by_time
from canaryflow.kernel.analysis.sequential import srm_log_evidence
from canaryflow.kernel.analysis.series import (
    FloatArray,
    IntArray,
    ObservationSeries,
    between,
    last_look_at_or_before,
)
from canaryflow.kernel.analysis.wording import check_reason
from canaryflow.kernel.contracts.causes import FailureCause as Cause
from canaryflow.kernel.contracts.providers import STEP_SIGNALS
from canaryflow.kernel.types import Check, CheckEvidence, CheckVerdict, Verdict

if TYPE_CHECKING:
    from policies.model import Policy

StepStatus = Literal["running", "pass", "fail", "inconclusive"]
RUNNING, PASS, FAIL, INCONCLUSIVE = 0, 1, 2, 3
STATUS_NAMES: dict[int, StepStatus] = {
    RUNNING: "running",
    PASS: "pass",
    FAIL: "fail",
    INCONCLUSIVE: "inconclusive",
}
DECISIONS = {PASS: "promote", FAIL: "rollback", INCONCLUSIVE: "inconclusive", RUNNING: "inconclusive"}
CHANGE_SHARE = 0.5  # of each check's false-rollback share, for the latest-window and trend checks
TREND_FRACTION = 0.5  # growth beyond this fraction of the tolerance is a trend


def check_at(check: CheckSeries, i: int, warming: bool = False) -> Check:
    verdict: CheckVerdict = "fail" if check.fails[i] else "pass" if check.passes[i] else "inconclusive"
    extra = {name: _json_number(values[i]) for name, values in check.stats.items()}
    if check.kind != "sample_ratio":  # the thresholds beside the numbers: a reader needs no policy
        extra["tolerance"] = check.tolerance
        extra["alternative"] = check.alternative
    reason = check_reason(check, i, verdict, warming)
    return Check(metric=check.metric, verdict=verdict, reason=reason, kind=check.kind, **extra)


def _json_number(value: float) -> float | None:
    number = float(value)
    return round(number, 6) if np.isfinite(number) else None


@dataclass
class SeriesEvaluation:
    """The engine's answer at every evaluation time of a series."""

    elapsed_s: FloatArray
    status: NDArray[np.int8]
    checks: list[CheckSeries]
    srm: CheckSeries | None
    warming: NDArray[np.bool_]
    warmup_end_s: float
    failing: NDArray[np.bool_]  # a check fails and the guards allow deciding: what ends a bake or watch

    def first_decision(self) -> int | None:
        decided = np.flatnonzero(self.status != RUNNING)
        return int(decided[0]) if decided.size else None

    def status_at(self, i: int) -> StepStatus:
        return STATUS_NAMES[int(self.status[i])]

    def verdict_at(self, i: int, time_offset_s: float = 0.0) -> Verdict:
        code = int(self.status[i])
        checks = [check_at(c, i, bool(self.warming[i])) for c in self.checks]
        if self.srm is not None:
            checks.append(check_at(self.srm, i))
        return Verdict(
            decision=DECISIONS[code],
            decided_at_s=None if code == RUNNING else float(self.elapsed_s[i]) + time_offset_s,
            checks=checks,
        )


EVIDENCE_POINTS = 60  # looks kept per check in a verdict's evidence (a step can last hours)


def evidence(
    evaluation: SeriesEvaluation, first: int, last: int, *, thin: bool = True
) -> list[CheckEvidence]:
    """Each two-arm check's estimate and bounds at the evaluation's looks `first..last` (indices into
    its arrays, which start at the first look judged; `Verdict.evidence`), thinned (`thin_evidence`)
    unless `thin` is False (a live step keeps every look and thins what it shows)."""
    looks = np.arange(first, last + 1)
    out = []
    for check in evaluation.checks:
        stats = check.stats
        if "worse_estimate" not in stats:
            continue
        nothing = np.full(len(evaluation.elapsed_s), np.nan)
        lower, upper = stats.get("worse_lower", nothing), stats.get("worse_upper", nothing)
        out.append(
            CheckEvidence(
                metric=check.metric,
                kind=check.kind,
                tolerance=float(check.tolerance),
                alternative=float(check.alternative if check.alternative is not None else check.tolerance),
                elapsed_s=[round(float(evaluation.elapsed_s[i]), 3) for i in looks],
                estimate=[_json_number(stats["worse_estimate"][i]) for i in looks],
                lower=[_json_number(lower[i]) for i in looks],
                upper=[_json_number(upper[i]) for i in looks],
            )
        )
    return thin_evidence(out) if thin else out


def thin_evidence(checks: list[CheckEvidence]) -> list[CheckEvidence]:
    """At most `EVIDENCE_POINTS` evenly spread looks of each check, the first and the last kept."""
    count = len(checks[0].elapsed_s) if checks else 0
    if count <= EVIDENCE_POINTS:
        return checks
    keep = np.unique(np.linspace(0, count - 1, EVIDENCE_POINTS).round().astype(int))
    fields = ("elapsed_s", "estimate", "lower", "upper")
    return [c.model_copy(update={f: [getattr(c, f)[i] for i in keep] for f in fields}) for c in checks]


def phases(policy: Policy) -> int:
    """How many comparisons share the rollout's budget: the steps, and the watch if there is one."""
    return len(policy.steps) + (1 if policy.watch_s > 0 else 0)


def evaluate_series(
    policy: Policy,
    series: ObservationSeries,
    step_index: int = 0,
    canary_weight: float | None = None,
    *,
    warmed_up: bool = False,
    hold_until_s: float | None = None,
    from_look: int = 0,
    recorded_baseline: bool = False,
    window_memo: WindowMemo | None = None,
) -> SeriesEvaluation:
    """Judge the looks of `series` (cumulative counts since the step started) from `from_look` on.

    The looks before `from_look` are not judged but still place the warm-up's end and the windows
    (a replay judges a long log a block at a time). `warmed_up`: the caller's counts already start
    after the warm-up (the live step queries them so). `hold_until_s`: a bake or a watch: the step
    cannot pass before then, and passes then unless a check failed; no maximum duration applies.
    `recorded_baseline`: a watch, the baseline arm is the previous champion's record (never cut).
    `window_memo`: the completed change windows' verdicts from earlier calls on the same series (longer
    now): read from it, and the new ones added (a live step judging look by look).
    """
    if not 0 <= step_index < len(policy.steps):
        raise ValueError(f"step_index: {step_index} outside the policy's {len(policy.steps)} steps")
    step = policy.steps[step_index]
    if not recorded_baseline:  # concurrent arms: latencies compared at the same moments (paired.py)
        series = pair_by_time(series)
    weight = float(step.weight if canary_weight is None else canary_weight)
    rows = np.arange(from_look, len(series), dtype=np.intp)
    n = rows.size
    elapsed = series.elapsed_s[rows]
    origin, origin_s = _warmup_origin(policy, series, 0.0 if warmed_up else step.warmup_s)
    warming = rows <= origin
    post = between(series, np.full(n, origin, dtype=np.intp), rows, recorded_baseline)
    share = policy.error_budget.false_rollback / phases(policy) / max(policy.statistical_checks, 1)
    tolerance_level = policy.error_budget.false_rollback_at_tolerance / phases(policy)
    levels = Levels(
        same=share * (1 - CHANGE_SHARE),
        tolerance=max(share, tolerance_level) * (1 - CHANGE_SHARE),
        promote=policy.error_budget.false_promote,  # intersection-union: no split (module docstring)
        prior_strength=policy.prior_strength,
    )
    checks = _checks(policy, post, levels)
    frame = _Frame(series, rows, origin, origin_s, recorded_baseline)
    _require_persistence(policy, frame, checks)
    horizon = policy.max_duration_s + policy.bake_s if hold_until_s is None else hold_until_s
    windows = max(1, math.ceil(max(horizon, policy.watch_s) / policy.change_window_s))
    change_levels = Levels.uniform(
        share * CHANGE_SHARE / windows / 2, policy.prior_strength
    )  # two per window
    if not recorded_baseline:  # against a record, load changes would read as change: see below
        _change_checks(policy, frame, checks, change_levels, {} if window_memo is None else window_memo)

    srm = _srm_check(policy, between(series, np.full(n, -1, dtype=np.intp), rows), weight)
    guard_ok = (
        ~warming
        & (elapsed - origin_s >= step.min_duration_s)
        & (post.canary.requests >= max(step.min_samples, 1))
        & (post.baseline.requests >= policy.min_baseline_samples)
    )
    any_fail = np.zeros(n, dtype=bool)
    all_pass = np.ones(n, dtype=bool)
    for check in checks:
        any_fail |= check.fails & check.has_data
        settled = check.passes & check.has_data
        all_pass &= settled if check.required else (settled | ~check.has_data)
    status = np.full(n, RUNNING, dtype=np.int8)
    if hold_until_s is None:
        status[elapsed >= policy.max_duration_s] = INCONCLUSIVE
        status[guard_ok & all_pass & ~any_fail] = PASS
    else:
        status[elapsed >= hold_until_s] = PASS
    if recorded_baseline and hold_until_s is not None:
        # A record is not concurrent: a busy hour would read as a regression in any one window. The
        # watch is judged once, on all of it (load swings and bursts average out), at its end.
        guard_ok &= elapsed >= hold_until_s
    status[guard_ok & any_fail] = FAIL
    if srm is not None:
        status[srm.fails] = INCONCLUSIVE
    return SeriesEvaluation(
        elapsed_s=elapsed,
        status=status,
        checks=checks,
        srm=srm,
        warming=warming,
        warmup_end_s=origin_s,
        failing=guard_ok & any_fail,
    )


def warmup_end_look(policy: Policy, series: ObservationSeries, step_index: int = 0) -> int:
    """The look the step's warm-up ends at (-1: no warm-up): the looks up to it decide nothing."""
    return _warmup_origin(policy, series, policy.steps[step_index].warmup_s)[0]


def _warmup_origin(policy: Policy, series: ObservationSeries, warmup_s: float) -> tuple[int, float]:
    """The look the warm-up ends at (-1: none, counts from the series' start) and its time."""
    if warmup_s <= 0:
        return -1, 0.0
    elapsed = series.elapsed_s
    start = 0.0
    if policy.warmup_from == "first_request":
        served = np.flatnonzero(series.canary.requests > 0)
        # The first request came at or before the first look that saw it: counting from that look
        # leaves out at least `warmup_s` of the canary's service.
        start = float(elapsed[served[0]]) if served.size else math.inf
    end = start + warmup_s
    if not math.isfinite(end):
        return len(series) - 1, math.inf
    index = int(last_look_at_or_before(elapsed, np.asarray([end]))[0])
    return index, float(elapsed[index]) if index >= 0 else 0.0


def _checks(policy: Policy, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
    out: list[CheckSeries] = []
    for metric in policy.metrics:
        kind = METRIC_KINDS[metric.kind]
        judged = series.for_metric(metric.name, own_series=kind.signal not in STEP_SIGNALS)
        if judged is None:
            out.extend(no_data(metric, name, len(series)) for name in metric.checks)
        else:
            out.extend(kind.evaluate(metric, judged, levels))
    for check in out:
        check.stats.setdefault("cause", _cumulative_cause(check.fails))
    return out


def _cumulative_cause(fails: NDArray[np.bool_]) -> FloatArray:
    """The `cause` field of a check judged on everything since the warm-up (a float: verdict JSON)."""
    return np.where(fails, Cause.CUMULATIVE, Cause.NONE).astype(float)


def _two_sided(check: CheckSeries) -> bool:
    """Checks with confidence bounds (not a gauge read as is): the ones change checks apply to."""
    return METRIC_KINDS[check.kind].statistical and "worse_upper" in check.stats


@dataclass(frozen=True)
class _Frame:
    """The series, the looks being judged, the warm-up's end (look and time), and whether the
    baseline is a record (a watch)."""

    series: ObservationSeries
    looks: IntArray
    origin: int
    origin_s: float
    recorded: bool


def _require_persistence(policy: Policy, frame: _Frame, checks: list[CheckSeries]) -> None:
    """A cumulative failure stands only if the second half of the data since the warm-up still puts
    the canary beyond the tolerance (point estimate): an early excess that has faded is a transient."""
    series, looks, origin, origin_s, recorded = (
        frame.series, frame.looks, frame.origin, frame.origin_s, frame.recorded
    )  # fmt: skip
    judged = [c.fails for c in checks if _two_sided(c)]
    if not judged:
        return
    rows = np.asarray(np.flatnonzero(np.any(judged, axis=0)), dtype=np.intp)
    if rows.size == 0:  # the field is there either way: a look's verdict never depends on the others
        for check in checks:
            if _two_sided(check):
                check.stats["recent_worse_estimate"] = np.full(looks.size, np.nan)
        return
    elapsed = series.elapsed_s
    at = looks[rows]
    middle = last_look_at_or_before(elapsed, (elapsed[at] + origin_s) / 2)
    recent = between(series, np.maximum(middle, origin), at, recorded)
    by_name = {c.metric: c for c in _checks(policy, recent, Levels.uniform(0.5))}
    for check in checks:
        if not _two_sided(check):
            continue
        estimate = by_name[check.metric].stats["worse_estimate"]
        persists = np.ones(looks.size, dtype=bool)
        persists[rows] = np.nan_to_num(estimate, nan=0.0) > check.tolerance
        check.stats["recent_worse_estimate"] = _scatter(looks.size, rows, estimate)
        check.fails = check.fails & persists
        check.stats["cause"] = _cumulative_cause(check.fails)


def _scatter(n: int, rows: IntArray, values: FloatArray) -> FloatArray:
    out = np.full(n, np.nan)
    out[rows] = values
    return out


# The verdicts of each completed change window, by (window, its first and last look, the last look
# of the windows before it, the warm-up's end, a record baseline): fixed once the window is complete,
# so a caller judging a step look by look passes the same memo and computes each window once.
WindowMemo = dict[tuple[int, int, int, int, int, bool], dict[str, tuple[bool, bool, float, float, float]]]


def _change_checks(
    policy: Policy, frame: _Frame, checks: list[CheckSeries], levels: Levels, memo: WindowMemo
) -> None:
    """Latest window against the baseline, and against the canary's own earlier windows."""
    series, looks, origin, origin_s, recorded = (
        frame.series, frame.looks, frame.origin, frame.origin_s, frame.recorded
    )  # fmt: skip
    elapsed = series.elapsed_s
    window_s = policy.change_window_s
    done = np.floor(np.maximum(elapsed[looks] - origin_s, 0.0) / window_s + 1e-9).astype(np.intp)
    done[looks <= origin] = 0
    completed = int(done.max()) if looks.size else 0
    if completed < 1:  # the fields are there either way: a look's verdict never depends on the others
        for check in checks:
            if _two_sided(check):
                for name in ("window_worse_estimate", "window_worse_lower", "trend_lower"):
                    check.stats[name] = np.full(looks.size, np.nan)
        return
    bounds = last_look_at_or_before(elapsed, origin_s + window_s * np.arange(completed + 1, dtype=float))
    bounds[0] = origin
    # Only the windows the judged looks report (each look its latest completed one), each computed
    # once: a live tick judging its new look reads its window from `memo`.
    k = np.unique(done[done >= 1])
    earlier_rows = np.maximum(k - 1, 1)  # window 1 has no earlier window: compared with itself, unused
    keys = [
        (int(j), int(bounds[j - 1]), int(bounds[j]), int(bounds[e]), origin, recorded)
        for j, e in zip(k, earlier_rows, strict=True)
    ]
    todo = np.asarray([i for i, key in enumerate(keys) if key not in memo], dtype=np.intp)
    if todo.size:
        _judge_windows(policy, frame, checks, levels, bounds, k[todo], [keys[i] for i in todo], memo)
    at = np.searchsorted(k, np.maximum(done, 1))  # each look's latest completed window (row of `k`)
    has_window = done >= 1
    for check in checks:
        if not _two_sided(check):
            continue
        rows = [memo[key][check.metric] for key in keys]
        window_fail = np.asarray([r[0] for r in rows], dtype=bool)
        trend_fail = np.asarray([r[1] for r in rows], dtype=bool)
        estimate, lower, growth = (np.asarray([r[i] for r in rows], dtype=float) for i in (2, 3, 4))
        window_at = has_window & window_fail[at]
        trend_at = has_window & trend_fail[at]
        check.stats["window_worse_estimate"] = np.where(has_window, estimate[at], np.nan)
        check.stats["window_worse_lower"] = np.where(has_window, lower[at], np.nan)
        check.stats["trend_lower"] = np.where(has_window & (k[at] >= 2), growth[at], np.nan)
        cause = check.stats["cause"]
        cause = np.where(
            cause == Cause.NONE,
            np.where(window_at, Cause.LATEST_WINDOW, np.where(trend_at, Cause.TREND, Cause.NONE)),
            cause,
        )
        check.stats["cause"] = cause.astype(float)
        check.fails = check.fails | window_at | trend_at


def _judge_windows(
    policy: Policy,
    frame: _Frame,
    checks: list[CheckSeries],
    levels: Levels,
    bounds: IntArray,
    k: IntArray,
    keys: list[tuple[int, int, int, int, int, bool]],
    memo: WindowMemo,
) -> None:
    """Windows `k`: each against the baseline's same window and against the earlier windows pooled,
    into `memo` by `keys` (per two-sided check: window fails, trend fails, the window's estimate and
    lower bound, the growth's lower bound)."""
    series, origin, recorded = frame.series, frame.origin, frame.recorded
    latest_series = between(series, bounds[k - 1], bounds[k], recorded)
    latest = {c.metric: c for c in _checks(policy, latest_series, levels)}
    earlier_rows = np.maximum(k - 1, 1)
    earlier_series = between(series, np.full(k.size, origin, dtype=np.intp), bounds[earlier_rows], recorded)
    earlier = {c.metric: c for c in _checks(policy, earlier_series, levels)}
    for key in keys:
        memo[key] = {}
    for check in checks:
        if not _two_sided(check):
            continue
        win, old = latest[check.metric], earlier[check.metric]
        window_fail = win.fails & win.has_data
        growth = _growth(check, win.stats["worse_lower"], old.stats["worse_upper"])
        trend_fail = (k >= 2) & win.has_data & old.has_data & (growth > TREND_FRACTION * check.tolerance)
        for i, key in enumerate(keys):
            memo[key][check.metric] = (
                bool(window_fail[i]),
                bool(trend_fail[i]),
                float(win.stats["worse_estimate"][i]),
                float(win.stats["worse_lower"][i]),
                float(growth[i]),
            )


def _growth(check: CheckSeries, latest_lower: FloatArray, earlier_upper: FloatArray) -> FloatArray:
    """Lower bound on how much worse the latest window is than the earlier ones (same scale as the
    tolerance: relative for relative kinds, else a difference)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if METRIC_KINDS[check.kind].comparison == "relative":
            growth = (1 + latest_lower) / (1 + np.maximum(earlier_upper, -0.999)) - 1
        else:
            growth = latest_lower - earlier_upper
    return np.nan_to_num(growth, nan=-np.inf, posinf=np.inf, neginf=-np.inf)


def _srm_check(policy: Policy, series: ObservationSeries, weight: float) -> CheckSeries | None:
    if not policy.sample_ratio.enabled or not 0 < weight < 100:
        return None
    canary_n, total = series.canary.requests, series.canary.requests + series.baseline.requests
    log_e = srm_log_evidence(canary_n, total, weight / 100.0)
    share = np.divide(canary_n, total, out=np.full_like(total, np.nan), where=total > 0)
    mismatch = log_e >= np.log(1.0 / policy.sample_ratio.alpha)
    return CheckSeries(
        metric="sample_ratio",
        kind="sample_ratio",
        required=False,
        has_data=total > 0,
        fails=mismatch,
        passes=~mismatch & (total > 0),
        stats={"canary_share": share, "expected_share": np.full_like(total, weight / 100.0), "log_e": log_e},
        tolerance=policy.sample_ratio.alpha,
    )
