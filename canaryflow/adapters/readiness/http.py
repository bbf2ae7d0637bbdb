"""Embedded default: the inference server answers `GET /ready` with 200 once the canary version is loaded."""

from __future__ import annotations

import httpx

from canaryflow.kernel.types import ReadinessResult, RolloutSpec


class HttpReadiness:
    def __init__(self, base_url: str, timeout_s: float = 2.0) -> None:
        self.url = base_url.rstrip("/") + "/ready"
        self.timeout_s = timeout_s

    def check(self, spec: RolloutSpec) -> ReadinessResult:
        try:
            resp = httpx.get(self.url, params={"version": spec.canary_version}, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            return ReadinessResult(ready=False, reason=f"canary not ready: {self.url} unreachable ({exc})")
        if resp.status_code == 200:
            return ReadinessResult(ready=True, reason=f"{self.url} answered 200")
        return ReadinessResult(
            ready=False, reason=f"canary not ready: {self.url} answered {resp.status_code}"
        )
