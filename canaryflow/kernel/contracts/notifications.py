"""Rollout notifications: which transitions are announced, and the notice every channel is sent.

The controller builds a `RolloutNotice` when a rollout moves; the notifier adapters
(`canaryflow.adapters.notify`) turn it into a chat message (apprise) or a CloudEvent whose `data` is the
notice itself, with type `io.canaryflow.rollout.<event>`. Receivers key on these names, so they are
spelled once, here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CLOUDEVENT_TYPE_PREFIX = "io.canaryflow.rollout."


class NoticeEvent(StrEnum):
    STARTED = "started"
    STEP_PASSED = "step_passed"
    AWAITING_APPROVAL = "awaiting_approval"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    # A champion's traffic drifted from (or came back to) its reference: the drift monitor's events.
    DRIFT_DETECTED = "drift_detected"
    DRIFT_CLEARED = "drift_cleared"


DRIFT_EVENTS = frozenset({NoticeEvent.DRIFT_DETECTED, NoticeEvent.DRIFT_CLEARED})
DRIFT_CLOUDEVENT_TYPE_PREFIX = "io.canaryflow.drift."


class CheckSummary(BaseModel):
    """One metric's verdict at the step the notice is about (the shape of the verdict contract's checks)."""

    model_config = ConfigDict(frozen=True)

    metric: str
    verdict: str
    reason: str = ""


class RolloutNotice(BaseModel):
    """What happened to a rollout, readable by a person (`summary`) and by a machine (the other fields)."""

    model_config = ConfigDict(frozen=True)

    event: NoticeEvent
    rollout_id: str
    model: str
    baseline_version: str
    canary_version: str
    environment: str
    phase: str
    step: int | None = Field(default=None, description="1-based traffic step the notice is about")
    weight: int = 0
    at: float
    reason: str = ""
    checks: list[CheckSummary] = Field(default_factory=list)
    advice: list[str] = Field(
        default_factory=list,
        description="the step's forecast advice when it could not expect to decide in time "
        "(`analysis.forecast.advice`): why a step ended undecided, and what would decide it",
    )
    links: dict[str, str] = Field(default_factory=dict, description="rollout, workflow, pull_request, report")

    @property
    def cloudevent_type(self) -> str:
        if self.event in DRIFT_EVENTS:  # io.canaryflow.drift.detected / .cleared
            return f"{DRIFT_CLOUDEVENT_TYPE_PREFIX}{self.event.value.removeprefix('drift_')}"
        return f"{CLOUDEVENT_TYPE_PREFIX}{self.event.value}"

    def headline(self) -> str:
        where = f" at step {self.step} ({self.weight}%)" if self.step else ""
        canary, baseline = f"v{self.canary_version}", f"v{self.baseline_version}"
        what = {
            NoticeEvent.STARTED: f"canary v{self.canary_version} started against v{self.baseline_version}",
            NoticeEvent.STEP_PASSED: f"step {self.step} passed, canary v{self.canary_version} moves on",
            NoticeEvent.AWAITING_APPROVAL: f"v{self.canary_version} passed analysis, waiting for approval",
            NoticeEvent.PROMOTED: f"v{self.canary_version} promoted (was v{self.baseline_version})",
            NoticeEvent.ROLLED_BACK: f"{canary} rolled back{where}, {baseline} serves",
            NoticeEvent.FAILED: f"rollout of v{self.canary_version} failed{where}",
            NoticeEvent.DRIFT_DETECTED: f"champion v{self.canary_version} drifts from its reference",
            NoticeEvent.DRIFT_CLEARED: f"champion v{self.canary_version} is back within its reference",
        }[self.event]
        return f"{self.model} ({self.environment}): {what}"

    def summary(self) -> str:
        """Plain lines: the headline's why, each metric's verdict, and the links."""
        lines = [f"Reason: {self.reason}"] if self.reason else []
        for check in self.checks:
            why = f" ({check.reason})" if check.reason else ""
            lines.append(f"- {check.metric}: {check.verdict}{why}")
        lines += [f"Forecast: {line}" for line in self.advice]
        lines += [f"{name.replace('_', ' ')}: {url}" for name, url in sorted(self.links.items())]
        return "\n".join(lines)

    def data(self) -> dict[str, Any]:
        """The JSON payload for machines (the CloudEvent's data)."""
        return {**self.model_dump(mode="json"), "headline": self.headline(), "summary": self.summary()}


class NoticeDelivery(BaseModel):
    """What became of one notice on one channel: delivered, failed after its retries, or dropped (the
    channel's queue was full). The notifier reports each as it settles; the controller keeps them as
    the rollout's log of notifications sent (`GET /rollouts/{id}/notifications`)."""

    model_config = ConfigDict(frozen=True)

    channel: str = Field(description="the channel's name in the outbox (`describe()`, numbered if shared)")
    rollout_id: str
    event: NoticeEvent
    headline: str = ""
    notice_at: float = Field(description="when the notice was made (its transition)")
    at: float = Field(description="when it settled")
    outcome: Literal["delivered", "failed", "dropped"]
    attempts: int = Field(default=0, ge=0)
    error: str = ""
