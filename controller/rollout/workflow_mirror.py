"""Reads a workflow's node statuses into rollout events, step records and commits. Pure.

Node ids follow `workflows.dag` (one DAG for Argo and the local runner), named in
`canaryflow.kernel.contracts.steps`: `set-weight-<w>` (output `commit_sha`), `wait-ready` (first
step) and `wait-ready-<w>` (later steps), `analyze-<w>` (outputs `verdict`, `verdict_json`),
`request-approval` (`approval_id`, `approval_url`), `approval` (suspend), `promote` and the exit
handler `rollback` (both `commit_sha`), and where the policy has them `bake` (after the last step) and
`watch` (after promote), both analyses with `verdict` / `verdict_json`. The mirror is level-triggered:
it derives the whole picture from the status every time, so a controller restarted at any point
catches up from one read.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from canaryflow.kernel.contracts.steps import Output, Step, is_wait_node, weighted_node
from canaryflow.kernel.guarded_input import InputRefused, parse_json
from canaryflow.kernel.rollout import (
    ApprovalRequested,
    BakeStarted,
    Promoted,
    PromoteStarted,
    RollbackStarted,
    RolledBack,
    RolloutEvent,
    StepStarted,
    WatchStarted,
    WorkflowFailed,
)
from canaryflow.kernel.types import WorkflowNodeStatus, WorkflowStatus
from controller.rollout.records import StepRecord

_STARTED = frozenset({"Running", "Succeeded", "Failed", "Error"})
_DONE_BAD = frozenset({"Failed", "Error"})


class Mirror(BaseModel):
    events: list[RolloutEvent] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    commits: list[tuple[str, str]] = Field(default_factory=list, description="(sha, purpose)")
    approval_id: str | None = None
    approval_url: str | None = None
    approval_head_sha: str | None = None
    approval_opened_at: float | None = None
    waiting_reason: str | None = None
    current_node: str | None = None
    first_commit_done: bool = False
    approval_suspended: bool = False
    rollback_started: bool = False


def _verdict(node: WorkflowNodeStatus) -> dict[str, Any] | None:
    raw = node.outputs.get(Output.VERDICT_JSON)
    if not raw:
        return None
    try:
        doc = parse_json(raw, "verdict", max_bytes=None)
    except InputRefused:
        return {"decision": "inconclusive", "checks": [], "unreadable": raw[:200]}
    return doc if isinstance(doc, dict) else None


def _seconds(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _analysis_status(node: WorkflowNodeStatus, verdict: dict[str, Any] | None) -> str:
    if node.phase == "Succeeded":
        return str(node.outputs.get(Output.VERDICT) or (verdict or {}).get("decision") or "pass")
    if node.phase in _DONE_BAD:
        return str(node.outputs.get(Output.VERDICT) or "fail")
    return "running"


def _phase_record(node: WorkflowNodeStatus, index: int, weight: int, phase: str) -> StepRecord:
    verdict = _verdict(node)
    return StepRecord(
        index=index,
        weight=weight,
        phase=phase,
        started_at=node.started_at,
        status=_analysis_status(node, verdict),
        verdict=verdict,
    )


def mirror(status: WorkflowStatus, weights: list[int], bake_s: float = 0.0, watch_s: float = 0.0) -> Mirror:
    """Everything the status says, in the order it happened. `weights` are the policy's step weights,
    `bake_s` and `watch_s` its bake and watch (for the events' reasons)."""
    out = Mirror(current_node=status.node)
    by_id = {n.id: n for n in status.nodes}
    rollback_cause = status.message or "workflow ended without promotion"
    for index, weight in enumerate(weights):
        commit = by_id.get(weighted_node(Step.SET_WEIGHT, weight))
        analyze = by_id.get(weighted_node(Step.ANALYZE, weight))
        if commit is None or commit.phase not in _STARTED:
            break
        sha = commit.outputs.get(Output.COMMIT_SHA) or None
        if sha:
            out.commits.append((sha, f"step {index} at {weight}%"))
            out.first_commit_done = True
        out.events.append(StepStarted(index=index, weight=weight))
        verdict = _verdict(analyze) if analyze is not None else None
        step_status = "running"
        if analyze is not None and analyze.phase == "Succeeded":
            step_status = str(
                analyze.outputs.get(Output.VERDICT) or (verdict or {}).get("decision") or "pass"
            )
        elif analyze is not None and analyze.phase in _DONE_BAD:
            step_status = str(analyze.outputs.get(Output.VERDICT) or "fail")
            rollback_cause = f"step {index} at {weight}%: {analyze.message or 'analysis failed'}"
        elif analyze is not None and analyze.phase == "Running" and analyze.message:
            out.waiting_reason = analyze.message
        elif commit.phase in _DONE_BAD:
            step_status = "error"
            rollback_cause = f"commit at {weight}%: {commit.message or 'failed'}"
        out.steps.append(
            StepRecord(
                index=index,
                weight=weight,
                started_at=commit.started_at,
                commit_sha=sha,
                status=step_status,
                verdict=verdict,
            )
        )
    bake = by_id.get(Step.BAKE)
    if bake is not None and bake.phase in _STARTED and weights:
        out.events.append(BakeStarted(weight=weights[-1], bake_s=bake_s))
        out.steps.append(_phase_record(bake, len(weights), weights[-1], Step.BAKE))
        if bake.phase in _DONE_BAD:
            rollback_cause = f"bake at {weights[-1]}%: {bake.message or 'analysis failed'}"
        elif bake.phase == "Running" and bake.message:
            out.waiting_reason = bake.message
    for wait in (n for n in status.nodes if is_wait_node(n.id)):
        if wait.phase == "Running" and wait.message:
            out.waiting_reason = wait.message
    request = by_id.get(Step.REQUEST_APPROVAL)
    if request is not None and request.phase == "Succeeded":
        out.approval_id = request.outputs.get(Output.APPROVAL_ID) or None
        out.approval_url = request.outputs.get(Output.APPROVAL_URL) or None
        out.approval_head_sha = request.outputs.get(Output.APPROVAL_HEAD_SHA) or None
        out.approval_opened_at = _seconds(request.outputs.get(Output.APPROVAL_OPENED_AT))
        out.events.append(ApprovalRequested(url=out.approval_url or ""))
    approval = by_id.get(Step.APPROVAL)
    out.approval_suspended = approval is not None and approval.phase == "Running"
    promote = by_id.get(Step.PROMOTE)
    if promote is not None and promote.phase in _STARTED:
        out.events.append(PromoteStarted())
        if promote.outputs.get(Output.COMMIT_SHA):
            out.commits.append((promote.outputs[Output.COMMIT_SHA], "promote at 100%"))
        watch = by_id.get(Step.WATCH)
        if watch is not None and watch.phase in _STARTED:
            out.events.append(WatchStarted(watch_s=watch_s))
            out.steps.append(_phase_record(watch, len(weights) + 1, 100, Step.WATCH))
            if watch.phase in _DONE_BAD:
                rollback_cause = f"watch after promotion: {watch.message or 'analysis failed'}"
            elif watch.phase == "Running" and watch.message:
                out.waiting_reason = watch.message
        if promote.phase == "Succeeded" and status.phase == "Succeeded":
            out.events.append(Promoted())
    # A node whose attempt failed waits as Pending for its retry (a dependency down): say why.
    current = by_id.get(status.node) if status.node else None
    if current is not None and current.phase == "Pending" and current.message:
        out.waiting_reason = current.message
    rollback = by_id.get(Step.ROLLBACK)
    # A rollback attempt that failed waits for its retry: it has started all the same.
    retrying = rollback is not None and rollback.phase == "Pending" and status.node == Step.ROLLBACK
    if rollback is not None and (rollback.phase in _STARTED or retrying):
        out.rollback_started = True
        out.events.append(RollbackStarted(cause=rollback_cause))
        if rollback.outputs.get(Output.COMMIT_SHA):
            out.commits.append((rollback.outputs[Output.COMMIT_SHA], "rollback"))
        if rollback.phase == "Succeeded" and status.phase in ("Succeeded", "Failed", "Stopped", "Error"):
            out.events.append(RolledBack())
    if status.phase in ("Failed", "Error") and not (rollback is not None and rollback.phase == "Succeeded"):
        out.events.append(WorkflowFailed(message=status.message or f"workflow {status.phase}"))
    return out
