"""The console's own settings (`controller.console`, env `CANARYFLOW_CONTROLLER_CONSOLE__*`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="serve the pages under /console")
    commit_url: str | None = Field(
        default=None,
        description="link of a GitOps commit, with {sha}: e.g. https://github.com/org/gitops/commit/{sha}",
    )
    refresh_s: float = Field(default=2.0, ge=0.5, le=60, description="how often open pages refresh")

    @field_validator("commit_url")
    @classmethod
    def _has_sha(cls, value: str | None) -> str | None:
        if value is not None and "{sha}" not in value:
            raise ValueError("commit_url must contain {sha}")
        return value
