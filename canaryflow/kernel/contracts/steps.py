"""The rollout workflow's step names, node ids and outputs: one contract for every reader.

The DAG (`workflows.dag`) builds its nodes from these, the step functions write these outputs, the Argo
renderer turns them into templates and output parameters, and the controller's mirror
(`controller.rollout.workflow_mirror`) reads a workflow status back by them. A rename here is a rename
everywhere; a string spelled twice could drift silently.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Step(StrEnum):
    """The step functions (`canaryflow workflow step NAME`) and the fixed node ids named after them."""

    RENDER = "render"
    SET_WEIGHT = "set-weight"
    WAIT_READY = "wait-ready"
    ANALYZE = "analyze"
    BAKE = "bake"  # after the last step passes: the analysis goes on at its weight (policy bake_s)
    REQUEST_APPROVAL = "request-approval"
    APPROVAL = "approval"  # a suspend node: no step function, it waits for `resume`
    PROMOTE = "promote"
    WATCH = "watch"  # after promotion: the champion against the previous one's record (policy watch_s)
    ROLLBACK = "rollback"  # the exit handler


class Output(StrEnum):
    """Output parameters of the nodes (Argo reads each from a file of that name)."""

    FILES = "files"
    COMMIT_SHA = "commit_sha"
    READY = "ready"
    VERDICT = "verdict"
    VERDICT_JSON = "verdict_json"
    WINDOW_START = "window_start"  # unix time the analysis counts from (after the warm-up)
    APPROVAL_ID = "approval_id"
    APPROVAL_URL = "approval_url"
    APPROVAL_HEAD_SHA = "approval_head_sha"  # the promotion commit the pull request asks to approve
    APPROVAL_OPENED_AT = "approval_opened_at"  # unix seconds; reviews older than this never count


# The steps that run once per traffic step, their node ids carrying the weight.
WEIGHTED_STEPS = (Step.SET_WEIGHT, Step.WAIT_READY, Step.ANALYZE)
_WEIGHTED = re.compile(f"({'|'.join(re.escape(step) for step in WEIGHTED_STEPS)})-(\\d+)")


def weighted_node(step: Step, weight: int) -> str:
    """The id of a node of one traffic step (`set-weight-20`, `wait-ready-20`, `analyze-20`).

    The first step's wait is the plain `wait-ready` (the canary coming up); later steps wait for their
    split as `wait-ready-<weight>`."""
    return f"{step}-{weight}"


def parse_weighted_node(node_id: str) -> tuple[Step, int] | None:
    """(step, weight) of a per-weight node id, None for any other node."""
    match = _WEIGHTED.fullmatch(node_id)
    return (Step(match.group(1)), int(match.group(2))) if match else None


def is_wait_node(node_id: str) -> bool:
    """A node that waits for the canary and its traffic split before an analysis starts."""
    parsed = parse_weighted_node(node_id)
    return node_id == Step.WAIT_READY or (parsed is not None and parsed[0] == Step.WAIT_READY)
