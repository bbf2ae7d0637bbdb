"""The routing file: which model versions one inference server serves, and how traffic is split.

GitOps renders it into the routing ConfigMap (traffic mode `configmap`); the inference server
watches it and re-routes without dropping requests. One model per file; weights add up to 100.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from canaryflow.kernel.types import K8sName, ModelVersion

ROUTING_FILE_KEY = "routing.yaml"


class RoutedVersion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: ModelVersion
    uri: str = Field(min_length=1, description="models:/name/N, runs:/..., or a local path; never an alias")
    weight: int = Field(ge=0, le=100)
    role: Literal["baseline", "canary", "stable"] = "stable"


class ShadowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    sample_rate: float = Field(default=0.1, ge=0.0, le=1.0)


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: K8sName
    versions: list[RoutedVersion] = Field(min_length=1)
    sticky_header: str = "X-Canary-Key"
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)

    @model_validator(mode="after")
    def _consistent(self) -> RoutingConfig:
        total = sum(v.weight for v in self.versions)
        if total != 100:
            raise ValueError(f"versions: weights must add up to 100, got {total}")
        seen = [v.version for v in self.versions]
        if len(set(seen)) != len(seen):
            raise ValueError(f"versions: duplicate version in {seen}")
        if self.shadow.enabled and not any(v.role == "canary" for v in self.versions):
            raise ValueError("shadow.enabled: needs a version with role 'canary'")
        return self
