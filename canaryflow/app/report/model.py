"""What a rollout report shows: the decision, each step's verdict, and the evidence over time."""

from __future__ import annotations

from pydantic import BaseModel, Field

from canaryflow.kernel.analysis.observations import Histogram
from canaryflow.kernel.types import RolloutSpec, Verdict


class TimePoint(BaseModel):
    """Cumulative counts per arm since the rollout started, `t_s` seconds in."""

    t_s: float
    weight: int
    baseline_requests: int
    baseline_errors: int
    canary_requests: int
    canary_errors: int


class StepRecord(BaseModel):
    weight: int
    started_s: float
    ended_s: float | None = None
    verdict: Verdict | None = None


class EvidencePoint(BaseModel):
    """One check at one look: how much worse the canary is, with its bounds and the thresholds."""

    t_s: float
    phase: str = Field(description="the step's weight (`10%`), `bake` or `watch`")
    metric: str
    kind: str = ""
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    tolerance: float | None = None
    alternative: float | None = None


class PhaseMark(BaseModel):
    """A moment worth a vertical line: a step change, the end of a warm-up, the bake, the watch."""

    t_s: float
    label: str


class ReportData(BaseModel):
    spec: RolloutSpec
    decision: str
    reason: str = ""
    duration_s: float = 0.0
    steps: list[StepRecord] = Field(default_factory=list)
    timeline: list[TimePoint] = Field(default_factory=list)
    baseline_latency: Histogram | None = None
    canary_latency: Histogram | None = None
    commits: list[str] = Field(default_factory=list, description="`sha subject` lines, oldest first")
    evidence: list[EvidencePoint] = Field(default_factory=list)
    marks: list[PhaseMark] = Field(default_factory=list)
