"""Steps that put the canary in place: render and validate, commit a traffic weight, wait until ready."""

from __future__ import annotations

import time

from canaryflow.kernel.contracts.steps import Output
from canaryflow.kernel.types import RolloutSpec
from gitops.git import step_request
from workflows.steps.base import StepInput, StepOutcome
from workflows.steps.context import AuditLog, StepContext


def render(ctx: StepContext, step: StepInput) -> StepOutcome:
    """Renders the first traffic state and validates every document, before anything reaches git."""
    spec = step.spec
    request = step_request(spec, step.int_param("weight"), "canary", ctx.traffic_mode_for(spec))
    rendering = ctx.check_manifests(request)
    return StepOutcome(
        state="succeeded",
        outputs={Output.FILES: str(len(rendering.files))},
        message=f"{len(rendering.files)} manifests valid",
    )


def committed_sha(ctx: StepContext, spec: RolloutSpec, weight: int, decision: str) -> str:
    """The sha of a step this rollout committed earlier (a step run again after a crash commits nothing)."""
    if not isinstance(ctx.gitops, AuditLog):
        return ""
    for entry in reversed(ctx.gitops.audit_log(spec.model, spec.environment)):
        trailers = entry.trailers
        if (
            trailers.get("Rollout-Id") == spec.rollout_id
            and trailers.get("Traffic-Weight") == str(weight)
            and trailers.get("Decision") == decision
        ):
            return entry.sha
    return ""


def set_weight(ctx: StepContext, step: StepInput) -> StepOutcome:
    """One commit per traffic step; committing the same weight again changes nothing."""
    weight = step.int_param("weight")
    result = ctx.gitops.commit_step(step.spec, weight, "canary")
    sha = result.sha if result.changed and result.sha else committed_sha(ctx, step.spec, weight, "canary")
    note = "committed" if result.changed else "already committed"
    return StepOutcome(
        state="succeeded", outputs={Output.COMMIT_SHA: sha or ""}, message=f"canary at {weight}%: {note}"
    )


def wait_ready(ctx: StepContext, step: StepInput) -> StepOutcome:
    """Polled until the canary serves; fails once `timeout_s` has passed since the node started."""
    if ctx.readiness is None:
        return StepOutcome(
            state="succeeded", outputs={Output.READY: "true"}, message="no readiness source configured"
        )
    result = ctx.readiness.check(step.spec)
    if result.ready:
        return StepOutcome(state="succeeded", outputs={Output.READY: "true"}, message=result.reason)
    timeout_s = step.int_param("timeout_s")
    waited = time.time() - (step.started_at or time.time())
    if waited > timeout_s:
        return StepOutcome(
            state="failed",
            outputs={Output.READY: "false"},
            message=f"canary not ready after {timeout_s} s: {result.reason}",
        )
    return StepOutcome(state="running", outputs={Output.READY: "false"}, message=result.reason)
