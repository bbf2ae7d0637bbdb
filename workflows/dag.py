"""The rollout DAG, defined once as data.

Both the Argo WorkflowTemplate (`workflows.argo.render`) and the local runner (`workflows.local`) are
built from this one definition, so the two engines cannot drift: same nodes, same dependencies, same
retry policy, same exit handler. Pure: no I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from canaryflow.core.types import RolloutSpec
from policies.model import Policy

# action: runs once to completion (retried on error). wait / analyze: polled until they are done
# (the Argo container loops; the local runner polls once per reconcile). suspend: waits for `resume`.
NodeKind = Literal["action", "wait", "analyze", "suspend"]

ROLLBACK_NODE = "rollback"
APPROVAL_NODE = "approval"


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
        id=f"set-weight-{weight}",
        step="set-weight",
        kind="action",
        display_name=f"Commit canary at {weight}%",
        depends=depends,
        params={"weight": weight, "step_index": step_index},
        outputs=("commit_sha",),
        retry=NETWORK_RETRY,
    )


def _analyze_node(weight: int, step_index: int, depends: tuple[str, ...]) -> DagNode:
    # No retry: a verdict is a decision, not a transient error; re-running it would shop for a pass.
    return DagNode(
        id=f"analyze-{weight}",
        step="analyze",
        kind="analyze",
        display_name=f"Analyze canary at {weight}%",
        depends=depends,
        params={"weight": weight, "step_index": step_index},
        outputs=("verdict", "verdict_json"),
    )


def build_rollout_dag(policy: Policy, environment: str) -> RolloutDag:
    """render -> commit first weight -> wait ready -> analyze, (commit, analyze) per further weight
    -> [request approval -> approval suspend] -> promote; exit handler: rollback."""
    nodes: list[DagNode] = [
        DagNode(
            id="render",
            step="render",
            kind="action",
            display_name="Render and validate manifests",
            params={"weight": policy.steps[0].weight},
            outputs=("files",),
        )
    ]
    last = "render"
    for index, traffic in enumerate(policy.steps):
        commit = _commit_node(traffic.weight, index, (last,))
        nodes.append(commit)
        last = commit.id
        if index == 0:
            nodes.append(
                DagNode(
                    id="wait-ready",
                    step="wait-ready",
                    kind="wait",
                    display_name="Wait for the canary to be ready",
                    depends=(last,),
                    params={"timeout_s": 600},
                    outputs=("ready",),
                    retry=NETWORK_RETRY,
                )
            )
            last = "wait-ready"
        analyze = _analyze_node(traffic.weight, index, (last,))
        nodes.append(analyze)
        last = analyze.id

    gated = approval_gated(policy, environment)
    promote_inputs: dict[str, UpstreamOutput] = {}
    if gated:
        nodes.append(
            DagNode(
                id="request-approval",
                step="request-approval",
                kind="action",
                display_name="Open the approval pull request",
                depends=(last,),
                inputs_from={"verdict_json": UpstreamOutput(node=last, output="verdict_json")},
                outputs=("approval_id", "approval_url"),
                retry=NETWORK_RETRY,
            )
        )
        nodes.append(
            DagNode(
                id=APPROVAL_NODE,
                step=APPROVAL_NODE,
                kind="suspend",
                display_name="Wait for pull-request approval",
                depends=("request-approval",),
            )
        )
        last = APPROVAL_NODE
        promote_inputs["approval_id"] = UpstreamOutput(node="request-approval", output="approval_id")
    nodes.append(
        DagNode(
            id="promote",
            step="promote",
            kind="action",
            display_name="Promote canary to 100%",
            depends=(last,),
            inputs_from=promote_inputs,
            outputs=("commit_sha",),
            retry=NETWORK_RETRY,
        )
    )
    exit_node = DagNode(
        id=ROLLBACK_NODE,
        step="rollback",
        kind="action",
        display_name="Roll back the canary",
        outputs=("commit_sha",),
        retry=NETWORK_RETRY,
    )
    return RolloutDag(nodes=tuple(nodes), exit_node=exit_node, gated=gated)
