"""What a step function takes and returns, for both engines.

A step is a plain function `(StepContext, StepInput) -> StepOutcome`. An outcome `failed` is a decision
(analysis said no, the canary never became ready) and is never retried; an exception is an error
(network, remote refused) and is retried as the DAG node's retry policy says.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from canaryflow.kernel.types import RolloutSpec
from policies.model import Policy

# Exit codes of `canaryflow workflow step`, which Argo's retry expression reads.
EXIT_FAILED = 1  # the step decided: failed (analysis said no, canary never ready); never retried
EXIT_USAGE = 2  # bad input
EXIT_ERROR = 3  # an error (network, remote refused): retried where the node has a retry policy


class StepInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: RolloutSpec
    params: dict[str, int | str] = Field(default_factory=dict)
    upstream: dict[str, str] = Field(default_factory=dict, description="outputs of earlier nodes")
    reason: str = Field(default="", description="why the exit handler runs (rollback)")
    started_at: float | None = Field(default=None, description="when the node first started (unix s)")
    policy: Policy | None = Field(
        default=None, description="the policy as the rollout was submitted with (local runner); else loaded"
    )

    def int_param(self, name: str) -> int:
        value = self.params.get(name)
        if value is None:
            raise ValueError(f"params.{name}: required by this step")
        return int(value)


class StepOutcome(BaseModel):
    """`running`: a polled step is not done yet (wait-ready, analyze); call it again later."""

    state: Literal["running", "succeeded", "failed"]
    outputs: dict[str, str] = Field(default_factory=dict)
    message: str = ""
    report_markdown: str | None = None

    @property
    def done(self) -> bool:
        return self.state != "running"
