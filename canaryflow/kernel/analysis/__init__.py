"""Canary analysis: pure statistics from per-arm observations to a verdict (no I/O).

API for the workflow steps and the controller:

    from canaryflow.kernel.analysis import analyze, Observations, ArmObservations, Histogram
    result = analyze(policy, observations, step_index=i)   # -> AnalysisResult
    result.status    # "running" | "pass" | "fail" | "inconclusive"
    result.verdict   # canaryflow.kernel.types.Verdict (design.md's analysis record)

`observations` are cumulative since the step started (`canaryflow.adapters.metrics` sources produce them).
Call it on every tick; it is cheap and a pure function of its inputs, so repeating it is safe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from canaryflow.kernel.analysis.engine import SeriesEvaluation, StepStatus, evaluate_series
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
    policy: Policy, observations: Observations, *, step_index: int = 0, canary_weight: float | None = None
) -> AnalysisResult:
    """Judge one step from what both arms did since it started.

    `canary_weight` (percent) overrides the step's configured weight for the sample-ratio check,
    e.g. when the router reports the share it actually applies.
    """
    series = ObservationSeries.from_observations([observations])
    evaluation = evaluate_series(policy, series, step_index=step_index, canary_weight=canary_weight)
    return AnalysisResult(status=evaluation.status_at(0), verdict=evaluation.verdict_at(0))
