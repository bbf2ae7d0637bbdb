"""The rollout state machine: (state, event) -> (new state, reason). Pure: no I/O, no clock.

The workflow engine does the work (commits, analysis, promotion, rollback); this machine is the
controller's record of where a rollout stands, so that every transition the store writes is one the
machine allowed, with the reason it happened. An event the machine refuses is a bug or a stale status,
never silently applied.

    pending ─▶ canary(step i) ─▶ … ─▶ [baking] ─▶ awaiting_approval ─▶ promoting ─▶ [watching] ─▶ promoted
       │            └───────────────┬──────┴────────────┘                  │            │
       │                            ▼                                      ▼            │
       │                       rolling_back ◀───────────────────────────────────────────┘
       │                            └─▶ rolled_back          (any active) ─▶ failed
       └─▶ superseded ◀─ superseding ◀─ (any started state, when a newer event arrives)

`baking`: the last step passed; the analysis goes on at its weight for the policy's `bake_s`.
`watching`: promoted in git and the registry; the new champion is judged against the previous one's
record for `watch_s`, and a regression rolls back (git and aliases restored) like a failed step.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

RolloutPhase = Literal[
    "pending",
    "canary",
    "baking",
    "awaiting_approval",
    "promoting",
    "watching",
    "promoted",
    "rolling_back",
    "rolled_back",
    "superseding",
    "superseded",
    "failed",
]
TERMINAL: frozenset[str] = frozenset({"promoted", "rolled_back", "superseded", "failed"})
ACTIVE: frozenset[str] = frozenset(
    {
        "pending",
        "canary",
        "baking",
        "awaiting_approval",
        "promoting",
        "watching",
        "rolling_back",
        "superseding",
    }
)
# States in which the rollout owns the model's traffic (a workflow is running for it).
STARTED: frozenset[str] = ACTIVE - {"pending"}


class RolloutState(BaseModel):
    model_config = ConfigDict(frozen=True)

    phase: RolloutPhase = "pending"
    step_index: int | None = None


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)


class Started(_Event):
    kind: Literal["started"] = "started"
    workflow: str


class StepStarted(_Event):
    kind: Literal["step_started"] = "step_started"
    index: int = Field(ge=0)
    weight: int


class BakeStarted(_Event):
    kind: Literal["bake_started"] = "bake_started"
    weight: int
    bake_s: float


class WatchStarted(_Event):
    kind: Literal["watch_started"] = "watch_started"
    watch_s: float


class ApprovalRequested(_Event):
    kind: Literal["approval_requested"] = "approval_requested"
    url: str = ""


class Approved(_Event):
    kind: Literal["approved"] = "approved"
    by: str = ""


class Rejected(_Event):
    kind: Literal["rejected"] = "rejected"
    by: str = ""


class PromoteStarted(_Event):
    kind: Literal["promote_started"] = "promote_started"


class Promoted(_Event):
    kind: Literal["promoted"] = "promoted"


class RollbackStarted(_Event):
    kind: Literal["rollback_started"] = "rollback_started"
    cause: str


class RolledBack(_Event):
    kind: Literal["rolled_back"] = "rolled_back"


class Supersede(_Event):
    kind: Literal["supersede"] = "supersede"
    by_rollout: str


class TimedOut(_Event):
    kind: Literal["timed_out"] = "timed_out"
    after_s: float


class WorkflowFailed(_Event):
    kind: Literal["workflow_failed"] = "workflow_failed"
    message: str


RolloutEvent = Annotated[
    Started
    | StepStarted
    | BakeStarted
    | WatchStarted
    | ApprovalRequested
    | Approved
    | Rejected
    | PromoteStarted
    | Promoted
    | RollbackStarted
    | RolledBack
    | Supersede
    | TimedOut
    | WorkflowFailed,
    Field(discriminator="kind"),
]


class Transition(BaseModel):
    model_config = ConfigDict(frozen=True)

    before: RolloutState
    after: RolloutState
    event: str
    reason: str


class IllegalTransition(ValueError):
    """The event cannot happen in this state (a stale status, or a bug upstream)."""


_IN_FLIGHT = frozenset({"canary", "baking", "awaiting_approval", "promoting", "watching"})


def apply(state: RolloutState, event: RolloutEvent) -> Transition:
    """The next state after `event`, and why; raises IllegalTransition for an impossible pair."""
    after, reason = _next(state, event)
    return Transition(before=state, after=after, event=event.kind, reason=reason)


def _refuse(state: RolloutState, event: RolloutEvent) -> IllegalTransition:
    return IllegalTransition(f"event {event.kind!r} is not allowed in state {state.phase!r}")


def _next(s: RolloutState, e: RolloutEvent) -> tuple[RolloutState, str]:
    p = s.phase
    if p in TERMINAL:
        raise _refuse(s, e)
    match e:
        case Started(workflow=wf) if p == "pending":
            return RolloutState(phase="canary", step_index=None), f"workflow {wf} submitted"
        case StepStarted(index=i, weight=w) if p == "canary":
            if s.step_index is not None and i < s.step_index:
                raise IllegalTransition(f"step {i} after step {s.step_index}: steps only go forward")
            return RolloutState(phase="canary", step_index=i), f"step {i}: canary at {w}%"
        case BakeStarted(weight=w, bake_s=t) if p in ("canary", "baking"):
            return s.model_copy(update={"phase": "baking"}), f"every step passed: baking {t:.0f} s at {w}%"
        case WatchStarted(watch_s=t) if p in ("promoting", "watching"):
            return s.model_copy(
                update={"phase": "watching"}
            ), f"promoted: watching the new champion for {t:.0f} s"
        case ApprovalRequested(url=url) if p in ("canary", "baking"):
            return s.model_copy(update={"phase": "awaiting_approval"}), f"approval requested {url}".strip()
        case Approved(by=by) if p == "awaiting_approval":
            return s.model_copy(update={"phase": "promoting"}), f"approved{' by ' + by if by else ''}"
        case Rejected(by=by) if p == "awaiting_approval":
            return s.model_copy(update={"phase": "rolling_back"}), f"rejected{' by ' + by if by else ''}"
        case PromoteStarted() if p in ("canary", "baking", "awaiting_approval", "promoting"):
            return s.model_copy(update={"phase": "promoting"}), "every step passed: promoting"
        case Promoted() if p in ("promoting", "watching"):
            return s.model_copy(update={"phase": "promoted"}), "canary promoted to champion"
        case RollbackStarted(cause=cause) if p in _IN_FLIGHT | {"rolling_back"}:
            return s.model_copy(update={"phase": "rolling_back"}), f"rolling back: {cause}"
        case RollbackStarted(cause=cause) if p == "superseding":
            return s, f"rolling back (superseded): {cause}"
        case RolledBack() if p == "rolling_back":
            return s.model_copy(update={"phase": "rolled_back"}), "traffic returned to the baseline"
        case RolledBack() if p == "superseding":
            return s.model_copy(
                update={"phase": "superseded"}
            ), "superseded; traffic returned to the baseline"
        case Supersede(by_rollout=by) if p == "pending":
            return s.model_copy(update={"phase": "superseded"}), f"superseded by {by} before it started"
        case Supersede(by_rollout=by) if p in _IN_FLIGHT | {"rolling_back"}:
            return s.model_copy(update={"phase": "superseding"}), f"superseded by {by}: rolling back"
        case TimedOut(after_s=t) if p in _IN_FLIGHT:
            return s.model_copy(update={"phase": "rolling_back"}), f"max duration exceeded after {t:.0f} s"
        case WorkflowFailed(message=m) if p in ACTIVE:
            return s.model_copy(update={"phase": "failed"}), f"workflow failed: {m}"
    raise _refuse(s, e)
