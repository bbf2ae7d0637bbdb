"""The rollout's step functions, by the step name the DAG nodes (and `canaryflow workflow step`) use."""

from __future__ import annotations

from collections.abc import Callable

from canaryflow.kernel.contracts.steps import Step
from workflows.dag import DagNode
from workflows.steps.analysis import analyze, bake, watch
from workflows.steps.base import StepInput, StepOutcome
from workflows.steps.context import StepContext
from workflows.steps.deploy import render, set_weight, wait_ready
from workflows.steps.release import promote, request_approval, rollback

StepFunction = Callable[[StepContext, StepInput], StepOutcome]

STEPS: dict[str, StepFunction] = {
    Step.RENDER: render,
    Step.SET_WEIGHT: set_weight,
    Step.WAIT_READY: wait_ready,
    Step.ANALYZE: analyze,
    Step.BAKE: bake,
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
