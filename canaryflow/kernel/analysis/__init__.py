"""Canary analysis: pure statistics from per-arm observations to a verdict (no I/O).

API for the workflow steps and the controller:

    from canaryflow.kernel.analysis import analyze, Observations, ArmObservations, Histogram
    result = analyze(policy, observations, step_index=i)   # -> AnalysisResult
    result = analyze_looks(policy, readings, step_index=i)  # every look since the warm-up: the live step
    result.status    # "running" | "pass" | "fail" | "inconclusive"
    result.verdict   # canaryflow.kernel.types.Verdict (design.md's analysis record)

`observations` are cumulative since the step's warm-up ended (`canaryflow.adapters.metrics` sources
produce them).
Call it on every tick; it is cheap and a pure function of its inputs, so repeating it is safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from canaryflow.kernel.analysis.judge import SeriesEvaluation, StepStatus, evaluate_series, evidence
from canaryflow.kernel.analysis.observations import (
    DEFAULT_LATENCY_BUCKETS_MS,
    DEFAULT_LATENCY_BUCKETS_S,
    DEFAULT_SHADOW_BUCKETS,
    ArmObservations,
    Histogram,
    Observations,
)
from canaryflow.kernel.analysis.series import ArmSeries, ObservationSeries
from canaryflow.kernel.types import Verdict

if TYPE_CHECKING:
    from policies.model import Policy  # the policy package reads the kind table: no import back

__all__ = [
    "DEFAULT_LATENCY_BUCKETS_MS",
    "DEFAULT_LATENCY_BUCKETS_S",
    "DEFAULT_SHADOW_BUCKETS",
    "AnalysisResult",
    "ArmObservations",
    "ArmSeries",
    "Histogram",
    "ObservationSeries",
    "Observations",
    "SeriesEvaluation",
    "StepStatus",
    "analyze",
    "analyze_looks",
    "evaluate_series",
]


class AnalysisResult(BaseModel):
    """One look at a step: its status and the verdict record behind it.

    `status` "pass" means the step may advance (the verdict's decision reads "promote"), "fail" roll
    back, "inconclusive" give up without deciding (sample-ratio mismatch, or the policy's maximum
    duration reached), "running" keep the weight and look again later (decision "inconclusive",
    `decided_at_s` null).
    """

    status: Literal["running", "pass", "fail", "inconclusive"]
    verdict: Verdict


def analyze(
    policy: Policy,
    observations: Observations,
    *,
    step_index: int = 0,
    canary_weight: float | None = None,
    warmed_up: bool = True,
    hold_until_s: float | None = None,
    recorded_baseline: bool = False,
    history: Sequence[Observations] = (),
) -> AnalysisResult:
    """Judge one step from what both arms did since its warm-up ended.

    `history`: earlier readings counted from the same moment (e.g. at each `change_window_s`
    boundary), oldest first; with them the latest-window and trend checks apply live as in a replay.

    One reading cannot leave a warm-up out by itself, so the caller counts from the warm-up's end
    (the analyze step queries its metrics so); `warmed_up=False` treats the reading as counted from
    the step start, and nothing is decided before the warm-up is over.

    `canary_weight` (percent) overrides the step's configured weight for the sample-ratio check,
    e.g. when the router reports the share it actually applies. `hold_until_s` and
    `recorded_baseline` make it a bake or a watch (`evaluate_series`).
    """
    series = ObservationSeries.from_observations([*history, observations])
    evaluation = evaluate_series(
        policy,
        series,
        step_index=step_index,
        canary_weight=canary_weight,
        warmed_up=warmed_up,
        hold_until_s=hold_until_s,
        recorded_baseline=recorded_baseline,
    )
    last = len(series) - 1
    return AnalysisResult(status=evaluation.status_at(last), verdict=evaluation.verdict_at(last))


def analyze_looks(
    policy: Policy,
    looks: Sequence[Observations],
    *,
    step_index: int = 0,
    canary_weight: float | None = None,
    hold_until_s: float | None = None,
    from_look: int = 0,
) -> AnalysisResult:
    """Judge a step on its readings at every look since the warm-up ended (oldest first, each counted
    from the warm-up's end), as a replay of the same counts does: the first decisive look decides.
    Only the looks from `from_look` on are judged (a bake: those after the step passed); the ones
    before still place the windows and pair the latencies.

    What the live step calls with the metrics source's readings per look: latencies are paired by
    time between consecutive looks (`paired.py`), not only between windows, and the answer depends
    on the readings alone, not on when the step happened to look, so a restarted step reading the
    same history decides the same way at the same look. Without a decisive look: the last one,
    `running`. Not for a watch: its baseline is a record, judged once (`analyze`)."""
    if not 0 <= from_look < len(looks):
        raise ValueError(f"from_look: {from_look} outside the {len(looks)} looks (at least one is judged)")
    series = ObservationSeries.from_observations(looks)
    evaluation = evaluate_series(
        policy,
        series,
        step_index=step_index,
        canary_weight=canary_weight,
        warmed_up=True,
        hold_until_s=hold_until_s,
        from_look=from_look,
    )
    decided = evaluation.first_decision()
    at = len(evaluation.elapsed_s) - 1 if decided is None else decided
    # The evaluation's arrays start at `from_look`: its looks up to the verdict's.
    verdict = evaluation.verdict_at(at).model_copy(update={"evidence": evidence(evaluation, 0, at)})
    return AnalysisResult(status=evaluation.status_at(at), verdict=verdict)
