"""Steps that put the canary in place: render and validate, commit a traffic weight, wait until ready
(the canary serves, and the cluster routes the split the step committed)."""

from __future__ import annotations

import logging
import time

from canaryflow.adapters.metrics import MetricsError
from canaryflow.kernel.contracts.directives import TAG_RETRIED, directive_for
from canaryflow.kernel.contracts.steps import Output
from canaryflow.kernel.ports import TrafficUnreadable
from canaryflow.kernel.types import ReadinessResult, RolloutSpec
from gitops.git import step_request
from workflows.steps.base import StepInput, StepOutcome
from workflows.steps.context import StepContext

log = logging.getLogger(__name__)


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
    if ctx.history is None:
        return ""
    for entry in reversed(ctx.history.audit_log(spec.model, spec.environment)):
        trailers = entry.trailers
        if (
            trailers.get("Rollout-Id") == spec.rollout_id
            and trailers.get("Traffic-Weight") == str(weight)
            and trailers.get("Decision") == decision
        ):
            return entry.sha
    return ""


def set_weight(ctx: StepContext, step: StepInput) -> StepOutcome:
    """One commit per traffic step; committing the same weight again changes nothing. A step a person
    retried (`canaryflow.retried` on the canary's version, for this rollout and weight) commits with
    their note as its `Reason:` trailer."""
    weight = step.int_param("weight")
    spec = step.spec
    try:
        tags = ctx.registry.version_tags(spec.model, spec.canary_version)
    except Exception as exc:  # the registry is down: the commit goes on, without the note
        log.warning("retry directive unreadable: %s", exc)
        tags = {}
    retried = directive_for(tags, TAG_RETRIED, spec.rollout_id)
    reason = retried.note if retried is not None and retried.weight == weight else ""
    result = ctx.gitops.commit_step(step.spec, weight, "canary", reason=reason)
    sha = result.sha if result.changed and result.sha else committed_sha(ctx, step.spec, weight, "canary")
    note = "committed" if result.changed else "already committed"
    return StepOutcome(
        state="succeeded", outputs={Output.COMMIT_SHA: sha or ""}, message=f"canary at {weight}%: {note}"
    )


def committed_weights(spec: RolloutSpec, weight: int) -> dict[str, int]:
    """Version -> percent a canary step at `weight` committed (versions at 0% left out)."""
    split = {spec.baseline_version: 100 - weight, spec.canary_version: weight}
    return {version: share for version, share in split.items() if share}


def _split(weights: dict[str, int]) -> str:
    return ", ".join(f"v{version} {share}%" for version, share in sorted(weights.items())) or "nothing"


def _traffic_confirmed(ctx: StepContext, step: StepInput) -> ReadinessResult:
    """Whether the cluster serves the split the step committed (where a cluster is configured)."""
    if ctx.live_traffic is None or "weight" not in step.params:
        return ReadinessResult(ready=True, reason="")
    expected = committed_weights(step.spec, step.int_param("weight"))
    try:
        live = {version: share for version, share in ctx.live_traffic.weights(step.spec).items() if share}
    except TrafficUnreadable as exc:
        return ReadinessResult(ready=False, reason=f"traffic split unknown: {exc}")
    if live != expected:
        return ReadinessResult(
            ready=False,
            reason=f"traffic not yet as committed: live {_split(live)}, committed {_split(expected)}",
        )
    return ReadinessResult(ready=True, reason=f"live traffic as committed ({_split(live)})")


def wait_ready(ctx: StepContext, step: StepInput) -> StepOutcome:
    """Polled until the canary serves, the cluster routes the split the step committed (each where
    configured) and the metrics store has scraped the canary; fails once `timeout_s` has passed since
    the node started."""
    result = ctx.readiness.check(step.spec) if ctx.readiness is not None else None
    if result is None or result.ready:
        traffic = _traffic_confirmed(ctx, step)
        reasons = [r.reason for r in (result, traffic) if r is not None and r.reason]
        result = ReadinessResult(
            ready=traffic.ready, reason="; ".join(reasons) if traffic.ready else traffic.reason
        )
    if result.ready:
        result = _scraped(ctx, step, result)
    if result.ready:
        return StepOutcome(
            state="succeeded",
            outputs={Output.READY: "true"},
            message=result.reason or "no readiness source configured",
        )
    timeout_s = step.int_param("timeout_s")
    waited = time.time() - (step.started_at or time.time())
    if waited > timeout_s:
        return StepOutcome(
            state="failed",
            outputs={Output.READY: "false"},
            message=f"canary not ready after {timeout_s} s: {result.reason}",
        )
    return StepOutcome(state="running", outputs={Output.READY: "false"}, message=result.reason)


def _scraped(ctx: StepContext, step: StepInput, ready: ReadinessResult) -> ReadinessResult:
    """A traffic step's canary is ready for analysis once the metrics store has scraped it: before,
    its requests are missing from the looks and the sample-ratio check reads its share as 0%. Where
    the store cannot tell (`None`), nothing to wait for; an unreachable store is waited on as an
    unready canary is (the step's timeout ends it)."""
    if "weight" not in step.params or step.int_param("weight") <= 0:
        return ready
    spec = step.spec
    try:
        scraped = ctx.metrics.scraped(spec.model, spec.canary_version)
    except MetricsError as exc:
        return ReadinessResult(ready=False, reason=f"cannot tell whether the canary is scraped yet: {exc}")
    if scraped is False:
        return ReadinessResult(
            ready=False, reason=f"waiting for the metrics store's first scrape of v{spec.canary_version}"
        )
    return ready
