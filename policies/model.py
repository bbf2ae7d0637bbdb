"""The rollout policy: what a canary must show before it gets more traffic, and when to give up.

Skeleton of the schema shared by every part; the analysis fields are filled in with the engine.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrafficStep(_Strict):
    """One traffic weight the canary holds until the analysis decides (or its time runs out)."""

    weight: int = Field(ge=1, le=100, description="percent of requests sent to the canary")
    min_duration_s: float = Field(default=60.0, ge=0)
    min_samples: int = Field(default=200, ge=0, description="canary requests needed before deciding")


class ApprovalPolicy(_Strict):
    """Whether promotion waits for a pull-request approval, and on which environments."""

    required: bool = False
    environments: list[str] = Field(default_factory=lambda: ["production"])
    timeout_s: float = Field(default=24 * 3600.0, gt=0)


class Policy(_Strict):
    name: str = "default"
    traffic_mode: Literal["httproute", "configmap"] = "configmap"
    steps: list[TrafficStep] = Field(min_length=1)
    max_duration_s: float = Field(default=3600.0, gt=0)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)

    @model_validator(mode="after")
    def _weights_increase(self) -> Policy:
        weights = [s.weight for s in self.steps]
        if any(b <= a for a, b in zip(weights, weights[1:], strict=False)):
            raise ValueError(f"steps: weights must strictly increase, got {weights}")
        return self
