"""What a person (or a script) can do to a rollout: abort, promote now, retry, approve, reject, pause, resume.

Every action goes through the machinery the reconcile loop uses, under the model's lock: it is stored
first (`controller.rollout.actions`, keyed by its action id, so a repeated call changes nothing), then
applied as a state-machine transition plus the engine call the loop itself would make (`stop` rolls
back through the workflow's exit handler, `resume` releases the approval gate). The request applies it
at once when the model's lock is free; otherwise the loop's next tick does (`apply_pending`), so an
acknowledged action is applied exactly once even across a restart. An action the rollout's phase does
not allow is refused with a message naming the phase (HTTP 409), before anything is stored.

- abort: `RollbackStarted("aborted by <who>: <reason>")` and `engine.stop` with that text, which the
  rollback commit carries as its `Reason:` trailer (the GitOps history stays the audit log).
- approve / reject: the decision a bound pull-request review makes (`controller.approvals`), for the
  request the rollout is waiting on: the caller names the head commit it saw (`head_sha`), and an
  approval of a commit the request no longer asks about is refused, as a review of an older head is.
- promote: the remaining traffic steps and analyses are skipped (the local runner's `skip_analysis`);
  the promotion, and an approval gate the policy asks for, still run. Argo cannot skip a running
  container's node, so there the controller leaves the directive `canaryflow.promote_now` on the
  canary's registry version, and the analysis pod ends `skipped` at its next look, as does every
  commit, wait and analysis after it (`canaryflow.kernel.contracts.directives`).
- retry: a rollout that ended rolled back or failed at a failed or inconclusive traffic step (or
  bake) runs that step again in the same workflow, from its commit onward (the engine's
  `retry_from`: Argo's retry with `restartSuccessful` and a node selector; the local runner the
  same): `Retried` takes the record back to the canary at that step, naming who and why. Any
  other ended rollout (a failed watch, one that ended before any analysis) runs again from its
  first step as a new rollout.
- pause / resume: a paused rollout is not moved on by the loop, so the local runner's DAG stands
  still. On Argo the Workflow itself is suspended (`spec.suspend`: no further node starts) and
  resumed; a pause is refused once the workflow waits at its approval gate (Argo's resume would
  release it), where approve and reject are the way on.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from canaryflow.kernel.contracts.directives import TAG_PROMOTE_NOW, TAG_RETRIED, Directive
from canaryflow.kernel.contracts.phases import RolloutPhase
from canaryflow.kernel.contracts.steps import Step, weighted_node
from canaryflow.kernel.ports import EngineRefused, WorkflowEngine
from canaryflow.kernel.rollout import Approved, Rejected, Retried, RollbackStarted, RolloutEvent
from controller.observability import event
from controller.reconcile import Reconciler
from controller.rollout.actions import ActionKind, ActionRecord, ActionStore
from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore
from gitops.history import one_line

LOCK_WAIT_S = 5.0  # longer than this, the loop's next tick applies the stored action

# Which phases allow which action (a paused rollout allows resume and abort).
_P = RolloutPhase
ALLOWED: dict[ActionKind, frozenset[RolloutPhase]] = {
    "abort": frozenset({_P.CANARY, _P.BAKING, _P.AWAITING_APPROVAL, _P.PROMOTING, _P.WATCHING}),
    "promote": frozenset({_P.CANARY, _P.BAKING}),
    "retry": frozenset({_P.ROLLED_BACK, _P.FAILED}),
    "approve": frozenset({_P.AWAITING_APPROVAL}),
    "reject": frozenset({_P.AWAITING_APPROVAL}),
    "pause": frozenset({_P.CANARY, _P.BAKING}),
    "resume": frozenset({_P.CANARY, _P.BAKING}),
}


class ActionRefused(Exception):
    """The action cannot be taken now; `status` is the HTTP status that says why (404, 409, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class ActionRequest:
    kind: ActionKind
    actor: str
    reason: str = ""
    action_id: str | None = None
    head_sha: str | None = None  # approve / reject: the promotion commit the person reviewed


class RolloutActions:
    def __init__(
        self,
        store: RolloutStore,
        actions: ActionStore,
        reconciler: Reconciler,
        engine: WorkflowEngine,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.actions, self.reconciler, self.engine = store, actions, reconciler, engine
        self.clock = clock

    # -- asking ----------------------------------------------------------------------------------
    def request(self, rollout_id: str, wanted: ActionRequest) -> tuple[ActionRecord, bool]:
        """Stores the action and applies it if the model's lock comes free soon; (record, created).

        A repeated action id answers the stored record (created False) and changes nothing."""
        action_id = wanted.action_id or str(uuid.uuid4())
        known = self.actions.get(action_id)
        if known is not None:
            if (known.rollout_id, known.kind) != (rollout_id, wanted.kind):
                raise ActionRefused(
                    409, f"action_id: {action_id!r} was used for {known.kind} of rollout {known.rollout_id}"
                )
            return known, False
        record = self.store.get(rollout_id)
        if record is None:
            raise ActionRefused(404, f"no rollout {rollout_id!r}")
        self._check(record, wanted)
        details: dict[str, Any] = {"head_sha": wanted.head_sha} if wanted.head_sha else {}
        stored, created = self.actions.add(
            ActionRecord(
                id=action_id,
                rollout_id=rollout_id,
                model=record.model,
                kind=wanted.kind,
                actor=wanted.actor,
                reason=one_line(wanted.reason, 500),
                requested_at=self.clock(),
                details=details,
            )
        )
        if created:
            event(
                "action requested", rollout=rollout_id, action=wanted.kind, actor=wanted.actor, id=action_id
            )
            lock = self.reconciler.model_lock(record.model)
            # A replica that does not own the model leaves it to the owner's next tick.
            if self.reconciler.owns(record.model) and lock.acquire(timeout=LOCK_WAIT_S):
                try:
                    with self.reconciler.scope(record.model):
                        self.apply_pending(record.model)
                except Exception as exc:  # Argo unreachable: stored, the loop's next tick applies it
                    event(
                        "action not applied yet", logging.WARNING, rollout=rollout_id, error=repr(exc)[:300]
                    )
                finally:
                    lock.release()
            self.reconciler.notify()
        return self.actions.get(action_id) or stored, created

    def _check(self, record: RolloutRecord, wanted: ActionRequest) -> None:
        kind, phase = wanted.kind, record.phase
        if kind in ("abort", "promote", "reject") and not wanted.reason.strip():
            raise ActionRefused(422, f"reason: required to {kind} a rollout")
        if phase not in ALLOWED[kind]:
            allowed = ", ".join(sorted(ALLOWED[kind]))
            raise ActionRefused(
                409, f"cannot {kind} rollout {record.id}: it is {phase} ({kind} is allowed when {allowed})"
            )
        paused = self.actions.paused(record.id) is not None
        if kind == "pause" and paused:
            raise ActionRefused(409, f"cannot pause rollout {record.id}: it is {phase} and paused already")
        if kind == "resume" and not paused:
            raise ActionRefused(409, f"cannot resume rollout {record.id}: it is {phase} and not paused")
        if kind == "pause" and not (_runs_only_when_reconciled(self.engine) or _can(self.engine, "pause")):
            raise ActionRefused(409, f"cannot pause rollout {record.id}: its engine cannot hold a workflow")
        if kind == "promote" and not _can(self.engine, "skip_analysis") and self.reconciler.registry is None:
            raise ActionRefused(
                409,
                f"cannot promote rollout {record.id} now: its engine cannot skip a running analysis "
                "and no registry is configured to tell the workflow's steps",
            )
        if kind in ("approve", "reject"):
            if not record.approval_id or not record.approval_head_sha:
                raise ActionRefused(409, f"rollout {record.id} is {phase} but has no approval request yet")
            if wanted.head_sha and wanted.head_sha != record.approval_head_sha:
                raise ActionRefused(
                    409,
                    f"head_sha: the approval request of rollout {record.id} now asks about "
                    f"{record.approval_head_sha}, not {wanted.head_sha}: review it again",
                )
        if kind == "retry":
            busy = [r.id for r in self.store.rollouts(active_only=True, model=record.model)]
            if busy:
                raise ActionRefused(
                    409,
                    f"cannot retry rollout {record.id}: model {record.model} has an active rollout "
                    f"{busy[-1]}",
                )

    # -- applying (under the model's lock) -------------------------------------------------------
    def apply_pending(self, model: str) -> None:
        """Applies the model's stored actions in order; the reconcile loop calls it under the lock."""
        for action in self.actions.pending(model):
            record = self.store.get(action.rollout_id)
            try:
                if record is None:
                    raise ActionRefused(404, f"no rollout {action.rollout_id!r}")
                wanted = ActionRequest(
                    action.kind, action.actor, action.reason, action.id, action.details.get("head_sha")
                )
                self._check(record, wanted)
                outcome = self._apply(record, action)
            except ActionRefused as exc:
                self.actions.settle(action.id, "refused", exc.message)
                event("action refused", logging.WARNING, rollout=action.rollout_id, why=exc.message)
                continue
            self.actions.settle(action.id, "applied", outcome)
            event("action applied", rollout=action.rollout_id, action=action.kind, outcome=outcome)

    def held(self, rollout_id: str) -> bool:
        """True while a pause holds the rollout (an abort ends the hold: the rollback must run)."""
        record = self.store.get(rollout_id)
        if record is None or record.phase not in ALLOWED["pause"]:
            return False
        return self.actions.paused(rollout_id) is not None

    def _apply(self, record: RolloutRecord, action: ActionRecord) -> str:
        who = f"{action.kind} by {action.actor}" + (f": {action.reason}" if action.reason else "")
        workflow = record.workflow or ""
        match action.kind:
            case "abort":
                cause = f"aborted by {action.actor}: {action.reason}"
                self._transition(record, RollbackStarted(cause=cause))
                self.engine.stop(workflow, cause)
                return "rolling back: the workflow's rollback commits the baseline"
            case "approve":
                self.engine.resume(workflow)
                self._transition(record, Approved(by=action.actor))
                return f"approved {record.approval_url or record.approval_id} at {record.approval_head_sha}"
            case "reject":
                self._transition(record, Rejected(by=action.actor))
                self.engine.stop(workflow, f"approval rejected by {action.actor}: {action.reason}")
                return "rejected: rolling back"
            case "promote":
                if not _can(self.engine, "skip_analysis"):  # Argo: the steps read it from the registry
                    self._direct(record, TAG_PROMOTE_NOW, who)
                    return f"asked the workflow's steps to skip the rest of the analysis ({TAG_PROMOTE_NOW})"
                skipped = self.engine.skip_analysis(workflow, who)  # type: ignore[attr-defined]
                return f"skipped {', '.join(skipped) or 'nothing (already past the analysis)'}"
            case "pause":
                if not _runs_only_when_reconciled(self.engine):  # Argo: suspend the Workflow itself
                    self._engine_call(lambda: self.engine.pause(workflow))  # type: ignore[attr-defined]
                self.store.update(record.id, waiting_reason=f"paused by {action.actor}: {action.reason}")
                return "paused"
            case "resume":
                if not _runs_only_when_reconciled(self.engine):
                    self._engine_call(lambda: self.engine.unpause(workflow))  # type: ignore[attr-defined]
                self.store.update(record.id, waiting_reason=None)
                return "resumed"
            case "retry":
                target = self._failed_step(record)
                if target is None or not record.workflow or not _can(self.engine, "retry_from"):
                    return f"new rollout {self._retry(record, action)}"
                node, index, weight = target
                note = f"retried by {action.actor}" + (f": {action.reason}" if action.reason else "")
                self._direct(record, TAG_RETRIED, note, weight)  # the re-run commit's Reason: trailer
                self._engine_call(lambda: self.engine.retry_from(workflow, node, note))  # type: ignore[attr-defined]
                retried = Retried(index=index, weight=weight, by=action.actor, why=action.reason)
                if self.reconciler.transition(record, retried, weight=weight, finished_at=None) is None:
                    raise ActionRefused(409, f"rollout {record.id} moved on from {record.phase}: try again")
                return f"step {index + 1} at {weight}% runs again, from {node}"
        raise ActionRefused(422, f"kind: unknown action {action.kind!r}")  # pragma: no cover

    def _direct(self, record: RolloutRecord, key: str, note: str, weight: int | None = None) -> None:
        """Leaves a directive for the workflow's steps on the canary's registry version (none without
        a registry: the local runner's promote needs none, a retried commit then has no note)."""
        registry = self.reconciler.registry
        if registry is None:
            return
        value = Directive(rollout_id=record.id, note=one_line(note, 900), weight=weight)
        registry.set_version_tag(record.model, record.canary_version, key, value.model_dump_json())

    @staticmethod
    def _engine_call(call: Callable[[], object]) -> None:
        try:
            call()
        except EngineRefused as exc:
            raise ActionRefused(409, str(exc)) from exc

    def _transition(self, record: RolloutRecord, ev: RolloutEvent) -> None:
        if self.reconciler.transition(record, ev) is None:
            raise ActionRefused(409, f"rollout {record.id} moved on from {record.phase}: try again")

    def _failed_step(self, record: RolloutRecord) -> tuple[str, int, int] | None:
        """(node to re-run from, step index, weight) for a rollout whose traffic step or bake failed or
        was inconclusive: the step's commit node, so the canary gets its traffic back before the
        analysis runs again (the rollback took it away); an aborted step counts (its analysis was
        stopped). None otherwise (a failed watch after promotion, a workflow that ended before any
        analysis): those are retried as a new rollout."""
        detail = self.store.detail(record.id)
        failed = [s for s in (detail.steps if detail else []) if s.status in ("fail", "inconclusive")]
        if not failed or failed[-1].phase not in ("step", Step.BAKE):
            return None
        step = failed[-1]
        return weighted_node(Step.SET_WEIGHT, step.weight), step.index, step.weight

    def _retry(self, record: RolloutRecord, action: ActionRecord) -> str:
        digest = hashlib.sha256(f"action:{action.id}".encode()).hexdigest()[:8]
        now = self.clock()
        fresh = RolloutRecord(
            id=f"{record.model[:40].rstrip('-')}-v{record.canary_version}-{digest}",
            model=record.model,
            baseline_version=record.baseline_version,
            canary_version=record.canary_version,
            policy=record.policy,
            environment=record.environment,
            trigger=f"action:{action.id}",
            created_at=now,
            updated_at=now,
            reason=f"retry of {record.id} by {action.actor}: {action.reason}".rstrip(": "),
        )
        self.store.create_rollout(fresh)
        return fresh.id


def _runs_only_when_reconciled(engine: WorkflowEngine) -> bool:
    """The local runner: nothing moves between the loop's reconciles, so holding the loop pauses it."""
    return bool(getattr(engine, "advances_only_when_reconciled", False))


def _can(engine: WorkflowEngine, capability: str) -> bool:
    return callable(getattr(engine, capability, None))
