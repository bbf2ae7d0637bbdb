"""The rollout DAG, defined once as data.

Both the Argo WorkflowTemplate (`workflows.argo.render`) and the local runner (`workflows.local`) are
built from this one definition, so the two engines cannot drift: same nodes, same dependencies, same
retry policy, same exit handler. Pure: no I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from canaryflow.kernel.contracts.steps import Output, Step, weighted_node
from canaryflow.kernel.types import RolloutSpec
from policies.model import Policy

# action: runs once to completion (retried on error). wait / analyze: polled until they are done
# (the Argo container loops; the local runner polls once per reconcile). suspend: waits for `resume`.
NodeKind = Literal["action", "wait", "analyze", "suspend"]

ROLLBACK_NODE = Step.ROLLBACK
APPROVAL_NODE = Step.APPROVAL


class RetryPolicy(BaseModel):
    """Retries with exponential backoff, for steps that talk to networks (git remote, registry, GitHub)."""

    model_config = ConfigDict(frozen=True)

    limit: int = Field(default=3, ge=0)
    backoff_s: float = Field(default=5.0, gt=0)
    factor: int = Field(default=2, ge=1)
    max_backoff_s: float = Field(default=60.0, gt=0)

    def delay_s(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1 = first retry)."""
        return float(min(self.max_backoff_s, self.backoff_s * self.factor ** max(0, attempt - 1)))


NETWORK_RETRY = RetryPolicy()
# The rollback restores the baseline after traffic moved: it never gives up while a dependency is down
# (a minute between attempts, for about 16 hours), so an outage ends in a rollback commit, not in a
# live canary beside a failed rollout.
ROLLBACK_RETRY = RetryPolicy(limit=1000, backoff_s=5.0, max_backoff_s=60.0)


class UpstreamOutput(BaseModel):
    """An input taken from an output of an earlier node (in Argo: `tasks.<node>.outputs.parameters`)."""

    model_config = ConfigDict(frozen=True)

    node: str
    output: str


class DagNode(BaseModel):
    """One step of the rollout: which step function it runs, after what, with which inputs."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    step: str
    kind: NodeKind
    display_name: str
    depends: tuple[str, ...] = ()
    params: dict[str, int | str] = Field(default_factory=dict)
    inputs_from: dict[str, UpstreamOutput] = Field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    retry: RetryPolicy | None = None


class RolloutDag(BaseModel):
    """The nodes in topological order, plus the exit handler that rolls back unless all succeeded."""

    model_config = ConfigDict(frozen=True)

    nodes: tuple[DagNode, ...]
    exit_node: DagNode
    gated: bool

    def node(self, node_id: str) -> DagNode:
        for node in (*self.nodes, self.exit_node):
            if node.id == node_id:
                return node
        raise KeyError(node_id)


def workflow_name(spec: RolloutSpec) -> str:
    """One workflow per rollout, under the same name on either engine."""
    return f"canaryflow-{spec.rollout_id}"[:63].rstrip("-")


def approval_gated(policy: Policy, environment: str) -> bool:
    """Promotion waits for a pull-request approval only where the policy asks for it."""
    return policy.approval.required and environment in policy.approval.environments


def _commit_node(weight: int, step_index: int, depends: tuple[str, ...]) -> DagNode:
    return DagNode(
        id=weighted_node(Step.SET_WEIGHT, weight),
        step=Step.SET_WEIGHT,
        kind="action",
        display_name=f"Commit canary at {weight}%",
        depends=depends,
        params={"weight": weight, "step_index": step_index},
        outputs=(Output.COMMIT_SHA,),
        retry=NETWORK_RETRY,
    )


def _analyze_node(weight: int, step_index: int, depends: tuple[str, ...]) -> DagNode:
    # No retry: a verdict is a decision, not a transient error; re-running it would shop for a pass.
    return DagNode(
        id=weighted_node(Step.ANALYZE, weight),
        step=Step.ANALYZE,
        kind="analyze",
        display_name=f"Analyze canary at {weight}%",
        depends=depends,
        params={"weight": weight, "step_index": step_index},
        outputs=(Output.VERDICT, Output.VERDICT_JSON, Output.WINDOW_START),
    )


def _bake_node(policy: Policy, last_analyze: str) -> DagNode:
    """The last step's analysis goes on at its weight, from where it started counting."""
    return DagNode(
        id=Step.BAKE,
        step=Step.BAKE,
        kind="analyze",
        display_name=f"Bake at {policy.steps[-1].weight}% for {policy.bake_s:g} s",
        depends=(last_analyze,),
        params={"weight": policy.steps[-1].weight, "step_index": len(policy.steps) - 1},
        inputs_from={Output.WINDOW_START: UpstreamOutput(node=last_analyze, output=Output.WINDOW_START)},
        outputs=(Output.VERDICT, Output.VERDICT_JSON, Output.WINDOW_START),
    )


def _watch_node(policy: Policy, record_from: str) -> DagNode:
    """After promotion: the champion against the previous champion's record of the last step; a
    failure fails the workflow, so the exit handler rolls back (git and registry aliases restored)."""
    return DagNode(
        id=Step.WATCH,
        step=Step.WATCH,
        kind="analyze",
        display_name=f"Watch the new champion for {policy.watch_s:g} s",
        depends=(Step.PROMOTE,),
        params={"step_index": len(policy.steps) - 1},
        inputs_from={Output.WINDOW_START: UpstreamOutput(node=record_from, output=Output.WINDOW_START)},
        outputs=(Output.VERDICT, Output.VERDICT_JSON),
    )


def build_rollout_dag(policy: Policy, environment: str) -> RolloutDag:
    """render -> commit first weight -> wait ready -> analyze, (commit, wait, analyze) per further weight
    -> [bake] -> [request approval -> approval suspend] -> promote -> [watch]; exit handler: rollback."""
    nodes: list[DagNode] = [
        DagNode(
            id=Step.RENDER,
            step=Step.RENDER,
            kind="action",
            display_name="Render and validate manifests",
            params={"weight": policy.steps[0].weight},
            outputs=(Output.FILES,),
        )
    ]
    last: str = Step.RENDER
    for index, traffic in enumerate(policy.steps):
        commit = _commit_node(traffic.weight, index, (last,))
        nodes.append(commit)
        last = commit.id
        # Every step waits until its split is live (and the canary ready) before it is analysed: on a
        # cluster, Argo CD syncs each commit in its own time, and an analysis of a step not yet in
        # effect would judge the previous split.
        wait = DagNode(
            id=Step.WAIT_READY if index == 0 else weighted_node(Step.WAIT_READY, traffic.weight),
            step=Step.WAIT_READY,
            kind="wait",
            display_name="Wait for the canary to be ready"
            if index == 0
            else f"Wait for the split at {traffic.weight}%",
            depends=(last,),
            params={"timeout_s": 600, "weight": traffic.weight},
            outputs=(Output.READY,),
            retry=NETWORK_RETRY,
        )
        nodes.append(wait)
        last = wait.id
        analyze = _analyze_node(traffic.weight, index, (last,))
        nodes.append(analyze)
        last = analyze.id
    if policy.bake_s > 0:
        nodes.append(_bake_node(policy, last))
        last = Step.BAKE
    record_from = last

    gated = approval_gated(policy, environment)
    promote_inputs: dict[str, UpstreamOutput] = {}
    if gated:
        nodes.append(
            DagNode(
                id=Step.REQUEST_APPROVAL,
                step=Step.REQUEST_APPROVAL,
                kind="action",
                display_name="Open the approval pull request",
                depends=(last,),
                inputs_from={Output.VERDICT_JSON: UpstreamOutput(node=last, output=Output.VERDICT_JSON)},
                outputs=(
                    Output.APPROVAL_ID,
                    Output.APPROVAL_URL,
                    Output.APPROVAL_HEAD_SHA,
                    Output.APPROVAL_OPENED_AT,
                ),
                retry=NETWORK_RETRY,
            )
        )
        nodes.append(
            DagNode(
                id=APPROVAL_NODE,
                step=APPROVAL_NODE,
                kind="suspend",
                display_name="Wait for pull-request approval",
                depends=(Step.REQUEST_APPROVAL,),
            )
        )
        last = APPROVAL_NODE
        for output in (Output.APPROVAL_ID, Output.APPROVAL_HEAD_SHA):
            promote_inputs[output] = UpstreamOutput(node=Step.REQUEST_APPROVAL, output=output)
    nodes.append(
        DagNode(
            id=Step.PROMOTE,
            step=Step.PROMOTE,
            kind="action",
            display_name="Promote canary to 100%",
            depends=(last,),
            inputs_from=promote_inputs,
            outputs=(Output.COMMIT_SHA,),
            retry=NETWORK_RETRY,
        )
    )
    if policy.watch_s > 0:
        nodes.append(_watch_node(policy, record_from))
    exit_node = DagNode(
        id=ROLLBACK_NODE,
        step=Step.ROLLBACK,
        kind="action",
        display_name="Roll back the canary",
        outputs=(Output.COMMIT_SHA,),
        retry=ROLLBACK_RETRY,
    )
    return RolloutDag(nodes=tuple(nodes), exit_node=exit_node, gated=gated)
