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

    rolled_back | failed ─(a person retries the failed step)─▶ canary(that step)

`baking`: the last step passed; the analysis goes on at its weight for the policy's `bake_s`.
`watching`: promoted in git and the registry; the new champion is judged against the previous one's
record for `watch_s`, and a regression rolls back (git and aliases restored) like a failed step.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from canaryflow.kernel.contracts.phases import RolloutPhase

P = RolloutPhase
TERMINAL: frozenset[RolloutPhase] = frozenset({P.PROMOTED, P.ROLLED_BACK, P.SUPERSEDED, P.FAILED})
ACTIVE: frozenset[RolloutPhase] = frozenset(
    {
        P.PENDING,
        P.CANARY,
        P.BAKING,
        P.AWAITING_APPROVAL,
        P.PROMOTING,
        P.WATCHING,
        P.ROLLING_BACK,
        P.SUPERSEDING,
    }
)
# States in which the rollout owns the model's traffic (a workflow is running for it).
STARTED: frozenset[RolloutPhase] = ACTIVE - {P.PENDING}


class RolloutState(BaseModel):
    model_config = ConfigDict(frozen=True)

    phase: RolloutPhase = P.PENDING
    step_index: int | None = None


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)


class Started(_Event):
    kind: Literal["started"] = "started"
    workflow: str
    # What the controller knew at the start: the forecast of each step from the champion's traffic,
    # and the policy the thin-evidence switch chose (`controller.policy_choice`). Kept in the reason.
    note: str = ""


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


class Retried(_Event):
    """A person re-runs the step that failed or was inconclusive (and what follows it) in the same
    workflow: the only way out of `rolled_back` or `failed`, into the canary at that step."""

    kind: Literal["retried"] = "retried"
    index: int = Field(ge=0)
    weight: int
    by: str = ""
    why: str = ""


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
    | WorkflowFailed
    | Retried,
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


_IN_FLIGHT = frozenset({P.CANARY, P.BAKING, P.AWAITING_APPROVAL, P.PROMOTING, P.WATCHING})


def apply(state: RolloutState, event: RolloutEvent) -> Transition:
    """The next state after `event`, and why; raises IllegalTransition for an impossible pair."""
    after, reason = _next(state, event)
    return Transition(before=state, after=after, event=event.kind, reason=reason)


def _refuse(state: RolloutState, event: RolloutEvent) -> IllegalTransition:
    return IllegalTransition(f"event {event.kind!r} is not allowed in state '{state.phase}'")


def _next(s: RolloutState, e: RolloutEvent) -> tuple[RolloutState, str]:
    p = s.phase
    if isinstance(e, Retried) and p in (P.ROLLED_BACK, P.FAILED):
        why = f": {e.why}" if e.why else ""
        return RolloutState(phase=P.CANARY, step_index=e.index), (
            f"step {e.index} retried{' by ' + e.by if e.by else ''}{why}: canary at {e.weight}% again"
        )
    if p in TERMINAL:
        raise _refuse(s, e)
    match e:
        case Started(workflow=wf, note=note) if p == P.PENDING:
            return RolloutState(phase=P.CANARY, step_index=None), "\n".join(
                filter(None, (f"workflow {wf} submitted", note))
            )
        case StepStarted(index=i, weight=w) if p == P.CANARY:
            if s.step_index is not None and i < s.step_index:
                raise IllegalTransition(f"step {i} after step {s.step_index}: steps only go forward")
            return RolloutState(phase=P.CANARY, step_index=i), f"step {i}: canary at {w}%"
        case BakeStarted(weight=w, bake_s=t) if p in (P.CANARY, P.BAKING):
            return s.model_copy(update={"phase": P.BAKING}), f"every step passed: baking {t:.0f} s at {w}%"
        case WatchStarted(watch_s=t) if p in (P.PROMOTING, P.WATCHING):
            return s.model_copy(
                update={"phase": P.WATCHING}
            ), f"promoted: watching the new champion for {t:.0f} s"
        case ApprovalRequested(url=url) if p in (P.CANARY, P.BAKING):
            return s.model_copy(update={"phase": P.AWAITING_APPROVAL}), f"approval requested {url}".strip()
        case Approved(by=by) if p == P.AWAITING_APPROVAL:
            return s.model_copy(update={"phase": P.PROMOTING}), f"approved{' by ' + by if by else ''}"
        case Rejected(by=by) if p == P.AWAITING_APPROVAL:
            return s.model_copy(update={"phase": P.ROLLING_BACK}), f"rejected{' by ' + by if by else ''}"
        case PromoteStarted() if p in (P.CANARY, P.BAKING, P.AWAITING_APPROVAL, P.PROMOTING):
            return s.model_copy(update={"phase": P.PROMOTING}), "every step passed: promoting"
        case Promoted() if p in (P.PROMOTING, P.WATCHING):
            return s.model_copy(update={"phase": P.PROMOTED}), "canary promoted to champion"
        case RollbackStarted(cause=cause) if p in _IN_FLIGHT | {P.ROLLING_BACK}:
            return s.model_copy(update={"phase": P.ROLLING_BACK}), f"rolling back: {cause}"
        case RollbackStarted(cause=cause) if p == P.SUPERSEDING:
            return s, f"rolling back (superseded): {cause}"
        case RolledBack() if p == P.ROLLING_BACK:
            return s.model_copy(update={"phase": P.ROLLED_BACK}), "traffic returned to the baseline"
        case RolledBack() if p == P.SUPERSEDING:
            return s.model_copy(
                update={"phase": P.SUPERSEDED}
            ), "superseded; traffic returned to the baseline"
        case Supersede(by_rollout=by) if p == P.PENDING:
            return s.model_copy(update={"phase": P.SUPERSEDED}), f"superseded by {by} before it started"
        case Supersede(by_rollout=by) if p in _IN_FLIGHT | {P.ROLLING_BACK}:
            return s.model_copy(update={"phase": P.SUPERSEDING}), f"superseded by {by}: rolling back"
        case TimedOut(after_s=t) if p in _IN_FLIGHT:
            return s.model_copy(update={"phase": P.ROLLING_BACK}), f"max duration exceeded after {t:.0f} s"
        case WorkflowFailed(message=m) if p in ACTIVE:
            return s.model_copy(update={"phase": P.FAILED}), f"workflow failed: {m}"
    raise _refuse(s, e)
