"""What the rollout store holds, as pydantic models (the shapes `GET /rollouts` answers with)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from canaryflow.kernel.contracts.phases import RolloutPhase
from canaryflow.kernel.rollout import RolloutState
from canaryflow.kernel.types import RolloutSpec


class RolloutRecord(BaseModel):
    id: str
    model: str
    baseline_version: str
    canary_version: str
    policy: str = "default"
    environment: str = "production"
    phase: RolloutPhase = RolloutPhase.PENDING
    step_index: int | None = None
    weight: int = 0
    workflow: str | None = None
    trigger: str = Field(default="", description="source:delivery_id of the registry event that started it")
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    reason: str = ""
    waiting_reason: str | None = None
    approval_id: str | None = None
    approval_url: str | None = None
    approval_head_sha: str | None = Field(default=None, description="the commit the approval is asked for")
    approval_opened_at: float | None = Field(default=None, description="reviews before this never count")
    superseded_by: str | None = None
    ready_at: float | None = None

    @property
    def state(self) -> RolloutState:
        return RolloutState(phase=self.phase, step_index=self.step_index)

    def spec(self) -> RolloutSpec:
        return RolloutSpec(
            rollout_id=self.id,
            model=self.model,
            baseline_version=self.baseline_version,
            canary_version=self.canary_version,
            policy=self.policy,
            environment=self.environment,
        )


class StepRecord(BaseModel):
    index: int
    weight: int
    phase: str = Field(default="step", description="step (a traffic weight), bake or watch")
    started_at: float | None = None
    commit_sha: str | None = None
    status: str = "running"
    verdict: dict[str, Any] | None = None


class TransitionRecord(BaseModel):
    at: float
    from_phase: str
    to_phase: str
    event: str
    reason: str


class CommitRecord(BaseModel):
    sha: str
    purpose: str
    at: float


class RolloutDetail(RolloutRecord):
    steps: list[StepRecord] = Field(default_factory=list)
    transitions: list[TransitionRecord] = Field(default_factory=list)
    commits: list[CommitRecord] = Field(default_factory=list)
    links: dict[str, str] = Field(default_factory=dict)


class InboxItem(BaseModel):
    id: int
    source: str
    delivery_id: str
    kind: Literal["registry", "approval"]
    event: dict[str, Any]
    received_at: float
    processed_at: float | None = None
    outcome: str | None = None
