"""The rollout's step functions, by the step name the DAG nodes (and `canaryflow workflow step`) use."""

from __future__ import annotations

import logging
from collections.abc import Callable

from canaryflow.kernel.contracts.directives import TAG_PROMOTE_NOW, directive_for
from canaryflow.kernel.contracts.steps import Step
from workflows.dag import DagNode
from workflows.steps.analysis import analyze, bake, watch
from workflows.steps.base import StepInput, StepOutcome
from workflows.steps.context import StepContext
from workflows.steps.deploy import render, set_weight, wait_ready
from workflows.steps.release import promote, request_approval, rollback

StepFunction = Callable[[StepContext, StepInput], StepOutcome]
log = logging.getLogger(__name__)


def heeding_promote_now(function: StepFunction) -> StepFunction:
    """A step that a promote-now skips (`canaryflow.kernel.contracts.directives`): before each call
    (an Argo pod's every look too) it reads the canary's registry tags, and once the rollout's
    `canaryflow.promote_now` is there it ends at once, Succeeded, as `skipped: <note>`. A registry
    that cannot be read changes nothing: the step runs as it would have."""

    def run(ctx: StepContext, step: StepInput) -> StepOutcome:
        if not ctx.directives:  # told directly (the controller's local runner)
            return function(ctx, step)
        spec = step.spec
        try:
            tags = ctx.registry.version_tags(spec.model, spec.canary_version)
        except Exception as exc:  # the registry is down: carry on, the next look reads it again
            log.warning("promote-now directive unreadable: %s", exc)
            tags = {}
        directive = directive_for(tags, TAG_PROMOTE_NOW, spec.rollout_id)
        if directive is not None:
            return StepOutcome(state="succeeded", message=f"skipped: {directive.note}")
        return function(ctx, step)

    run.__doc__ = function.__doc__
    return run


STEPS: dict[str, StepFunction] = {
    Step.RENDER: render,
    Step.SET_WEIGHT: heeding_promote_now(set_weight),
    Step.WAIT_READY: heeding_promote_now(wait_ready),
    Step.ANALYZE: heeding_promote_now(analyze),
    Step.BAKE: heeding_promote_now(bake),
    Step.WATCH: watch,
    Step.REQUEST_APPROVAL: request_approval,
    Step.PROMOTE: promote,
    Step.ROLLBACK: rollback,
}


class StepRunner:
    """What the local runner calls for each node: the node's step function, with these ports
    (`context`: what the steps keep between calls is there, e.g. the analysis cache)."""

    def __init__(self, context: StepContext) -> None:
        self.context = context

    def __call__(self, node: DagNode, step_input: StepInput) -> StepOutcome:
        return STEPS[node.step](self.context, step_input)


def step_runner(ctx: StepContext) -> StepRunner:
    """The local runner's step function over `ctx`."""
    return StepRunner(ctx)


__all__ = ["STEPS", "StepContext", "StepFunction", "StepInput", "StepOutcome", "StepRunner", "step_runner"]
