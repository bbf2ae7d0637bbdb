"""Steps that end a rollout: ask for approval, promote, or roll back (the exit handler).

Each is safe to run again: git renders are deterministic (a second commit changes nothing), alias
moves and tags set what is already set, a merged pull request stays merged.
"""

from __future__ import annotations

from canaryflow.kernel.contracts.steps import Output
from canaryflow.kernel.types import ApprovalRequest, RolloutSpec, Verdict
from gitops.history import one_line
from gitops.report import approval_report
from workflows.steps.base import StepInput, StepOutcome
from workflows.steps.context import StepContext
from workflows.steps.deploy import committed_sha

TAG_PROMOTED = "canaryflow.promoted"
TAG_RETIRED = "canaryflow.retired"
TAG_REJECTED = "canaryflow.rejected"


def request_approval(ctx: StepContext, step: StepInput) -> StepOutcome:
    """Opens the promotion pull request, the analysis report as its body."""
    if ctx.approval is None:
        raise ValueError(
            "the policy asks for approval but no approval gate is configured (gitops.github_repo)"
        )
    raw = step.upstream.get(Output.VERDICT_JSON, "")
    verdict = Verdict.model_validate_json(raw) if raw else Verdict(decision="promote")
    request = ctx.approval.request(step.spec, approval_report(step.spec, verdict))
    return StepOutcome(
        state="succeeded",
        outputs={
            Output.APPROVAL_ID: request.id,
            Output.APPROVAL_URL: request.url,
            Output.APPROVAL_HEAD_SHA: request.head_sha,
            Output.APPROVAL_OPENED_AT: f"{request.opened_at:.3f}" if request.opened_at is not None else "",
        },
        message=f"approval requested: {request.url or request.id}",
    )


def promote(ctx: StepContext, step: StepInput) -> StepOutcome:
    """100% to the canary in git (merging the approved pull request first), then the registry."""
    spec = step.spec
    approval_id = step.upstream.get(Output.APPROVAL_ID, "")
    if approval_id:
        if ctx.approval is None:
            raise ValueError("promote: an approval id was given but no approval gate is configured")
        # Merged at the reviewed head only: GitHub refuses the merge if the branch moved since.
        head = step.upstream.get(Output.APPROVAL_HEAD_SHA, "")
        ctx.approval.complete(ApprovalRequest(id=approval_id, head_sha=head))
    result = ctx.gitops.commit_step(spec, 100, "promote")
    sha = result.sha if result.changed and result.sha else committed_sha(ctx, spec, 100, "promote")
    ctx.registry.set_alias(spec.model, ctx.aliases.champion, spec.canary_version)
    ctx.registry.set_version_tag(spec.model, spec.canary_version, TAG_PROMOTED, spec.rollout_id)
    # A step retried after its rollback tagged the version rejected: promoted now, it is not.
    ctx.registry.delete_version_tag(spec.model, spec.canary_version, TAG_REJECTED)
    if spec.baseline_version != spec.canary_version:
        ctx.registry.set_version_tag(spec.model, spec.baseline_version, TAG_RETIRED, spec.rollout_id)
    return StepOutcome(
        state="succeeded",
        outputs={Output.COMMIT_SHA: sha or ""},
        message=f"v{spec.canary_version} is {ctx.aliases.champion}",
    )


def rollback(ctx: StepContext, step: StepInput) -> StepOutcome:
    """Restores the last promoted state in git, takes the canary's aliases back, tags it rejected.

    After a promotion (the watch failed) the registry goes back too: the canary loses the promoted
    tag this rollout gave it and the previous champion the retired one, so the tags say again which
    version is the champion."""
    spec = step.spec
    reason = step.reason or "rollout did not succeed"
    result = ctx.gitops.rollback(spec, reason)
    sha = result.sha if result.changed and result.sha else committed_sha(ctx, spec, 0, "rollback")
    registry, aliases = ctx.registry, ctx.aliases
    if registry.version_for_alias(spec.model, aliases.challenger) == spec.canary_version:
        registry.delete_alias(spec.model, aliases.challenger)
    if registry.version_for_alias(spec.model, aliases.champion) == spec.canary_version:
        registry.set_alias(spec.model, aliases.champion, spec.baseline_version)
    registry.set_version_tag(spec.model, spec.canary_version, TAG_REJECTED, one_line(reason, 250))
    if spec.baseline_version != spec.canary_version:
        _untag_if_this_rollout(ctx, spec.model, spec.canary_version, TAG_PROMOTED, spec.rollout_id)
        _untag_if_this_rollout(ctx, spec.model, spec.baseline_version, TAG_RETIRED, spec.rollout_id)
    return StepOutcome(
        state="succeeded",
        outputs={Output.COMMIT_SHA: sha or ""},
        message=f"rolled back v{spec.canary_version}: {one_line(reason, 200)}",
    )


class StepRollback:
    """`PromotionRollback` through the rollback step itself, for a rollout that ended promoted (the
    drift monitor's `on_drift: rollback`): the same git revert, alias moves and tags as the exit
    handler after a failed watch, so both ways back leave the same audit trail."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx

    def rollback(self, spec: RolloutSpec, reason: str) -> str:
        outcome = rollback(self.ctx, StepInput(spec=spec, reason=reason))
        return outcome.outputs.get(Output.COMMIT_SHA, "")


def _untag_if_this_rollout(ctx: StepContext, model: str, version: str, key: str, rollout_id: str) -> None:
    """Remove a tag that this rollout set (its value is the rollout id); one another rollout set stays."""
    if ctx.registry.version_tags(model, version).get(key) == rollout_id:
        ctx.registry.delete_version_tag(model, version, key)
