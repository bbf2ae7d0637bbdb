"""The readiness port: analysis must not start on a canary that is not serving yet."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from canaryflow.core.types import RolloutSpec


class ReadinessResult(BaseModel):
    ready: bool
    reason: str


class Readiness(Protocol):
    def check(self, spec: RolloutSpec) -> ReadinessResult: ...
