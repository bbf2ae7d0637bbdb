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


def step_runner(ctx: StepContext) -> Callable[[DagNode, StepInput], StepOutcome]:
    """What the local runner calls for each node: the node's step function, with these ports."""

    def run(node: DagNode, step_input: StepInput) -> StepOutcome:
        return STEPS[node.step](ctx, step_input)

    return run


__all__ = ["STEPS", "StepContext", "StepFunction", "StepInput", "StepOutcome", "step_runner"]
