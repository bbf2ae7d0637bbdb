"""What a render is asked for and what it produces; pure values, validated at the boundary."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from canaryflow.kernel.serving import ServingConfig
from canaryflow.kernel.types import K8sName, ModelVersion
from gitops.settings import TrafficMode

# A version's Deployment and Service are named `<model>-v<N>`; Services must be DNS-1035 labels
# (at most 63 characters, starting with a letter), so the model name leaves room for the suffix.
MAX_MODEL_NAME = 50


class RenderRequest(BaseModel):
    """One traffic state of a model in an environment.

    With no canary the state is stable: `baseline_version` alone takes all traffic (the state before a
    rollout, and after promotion with the promoted version as baseline).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: K8sName
    environment: K8sName
    baseline_version: ModelVersion
    canary_version: ModelVersion | None = None
    weight: int = Field(default=0, ge=0, le=100, description="percent of requests sent to the canary")
    traffic_mode: TrafficMode = "configmap"
    rollback_of: ModelVersion | None = Field(
        default=None,
        description="the canary a stable state rolls back: KServe Serverless then sends traffic straight "
        "to the last rolled-out revision instead of waiting for a new one",
    )

    serving: ServingConfig = Field(
        default_factory=ServingConfig, description="the server each version runs (the policy's `serving`)"
    )
    sources: dict[ModelVersion, str] = Field(
        default_factory=dict,
        description="version -> the artifact source the registry records for it, resolved at render time "
        "(servers other than canaryflow's load these files; default: the pinned models:/ URI)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RenderRequest:
        if not self.model[0].isalpha():
            raise ValueError(f"model: {self.model!r} must start with a letter (it names Services)")
        if len(self.model) > MAX_MODEL_NAME:
            raise ValueError(f"model: {self.model!r} is longer than {MAX_MODEL_NAME} characters")
        if self.canary_version == self.baseline_version:
            raise ValueError(f"canary_version: equals baseline_version {self.baseline_version}")
        if self.rollback_of is not None and (
            self.canary_version is not None or self.rollback_of == self.baseline_version
        ):
            raise ValueError(f"rollback_of: {self.rollback_of} is not a canary this stable state removes")
        if self.canary_version is None and self.weight not in (0, 100):
            raise ValueError(f"weight: {self.weight} splits traffic but there is no canary version")
        return self

    @property
    def is_stable(self) -> bool:
        return self.canary_version is None

    def stable(self, version: str) -> RenderRequest:
        """The stable state of the same model and environment, serving `version` alone."""
        return RenderRequest(
            model=self.model,
            environment=self.environment,
            baseline_version=version,
            traffic_mode=self.traffic_mode,
            serving=self.serving,
            sources={v: s for v, s in self.sources.items() if v == version},
        )


class Rendering(BaseModel):
    """Files of one render, by path relative to the repo root, and the paths the render owns.

    Writing a rendering replaces the owned paths entirely, so a file a previous state needed (a
    Deployment of a version no longer served) disappears with the new state.
    """

    model_config = ConfigDict(frozen=True)

    files: dict[str, str]
    owned: tuple[str, ...]
