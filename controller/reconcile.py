"""The reconcile loop: inbox -> rollouts, then every active rollout moved one tick.

Level-triggered on purpose: each tick reads what the store and the engine say now and does what is
still missing (start, stop, resume, record), so that a controller killed anywhere resumes by simply
running the next tick. The reconcile loop never writes to git or the registry itself: the workflow's
steps do, through the gitops layer and the `Registry` port; it reads the registry only to find the
baseline version when an event arrives. (The one write outside a workflow is the drift monitor's opt-in
rollback of a champion, `controller/drift_action.py`, which runs the rollback step under `model_lock`.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import Protocol

from canaryflow.kernel.contracts.phases import RolloutPhase
from canaryflow.kernel.ports import ApprovalGate, Notifier, Registry, ReviewAuthority, WorkflowEngine
from canaryflow.kernel.rollout import (
    STARTED,
    TERMINAL,
    Approved,
    IllegalTransition,
    Rejected,
    RolloutEvent,
    Started,
    StepStarted,
    Supersede,
    TimedOut,
    Transition,
    apply,
)
from canaryflow.kernel.types import ApprovalRequest, WorkflowStatus
from controller.approvals import bound_decision
from controller.controller_settings import ControllerSettings
from controller.dependencies import dependency_of, waiting_reason
from controller.faults import crash_point
from controller.notices import build_notice, notice_event, notice_links
from controller.observability import ControllerMetrics, event
from controller.policy_choice import StartChoice
from controller.rollout.records import InboxItem, RolloutRecord
from controller.rollout.store import RolloutStore, StaleState
from controller.rollout.workflow_mirror import Mirror, mirror
from controller.triggers import matching_rule, rollout_id_for
from controller.webhooks.events import ApprovalEvent, RegistryEvent
from controller.workers import KeyedWorkers, Precedence
from policies.model import Policy

PolicyLoader = Callable[[str], Policy]
EVENT_PRECEDENCE_S = 2.0  # the longest the rollouts' jobs wait for a new event's first commit


class ActionHook(Protocol):
    """People's actions on rollouts (`controller.actions`): applied under the model's lock each tick."""

    def apply_pending(self, model: str) -> None: ...

    def held(self, rollout_id: str) -> bool: ...


class PolicyChoiceHook(Protocol):
    """Which policy a rollout starts under, and what to record with its start (`controller.policy_choice`)."""

    def choose(self, record: RolloutRecord) -> StartChoice: ...


def default_policy_loader(name: str) -> Policy:
    from policies import load_policy

    policy: Policy = load_policy(name)
    return policy


class Reconciler:
    def __init__(
        self,
        settings: ControllerSettings,
        store: RolloutStore,
        engine: WorkflowEngine,
        registry: Registry | None,
        metrics: ControllerMetrics,
        *,
        approval_gate: ApprovalGate | None = None,
        reviewers: ReviewAuthority | None = None,
        policy_loader: PolicyLoader = default_policy_loader,
        clock: Callable[[], float] = time.time,
        notifier: Notifier | None = None,
        link_templates: Mapping[str, str] | None = None,
        workflow_link: Callable[[str], str] | None = None,
    ) -> None:
        self.settings, self.store, self.engine, self.registry = settings, store, engine, registry
        self.metrics, self.approval_gate = metrics, approval_gate
        self.notifier, self.link_templates = notifier, dict(link_templates or {})
        self.workflow_link = workflow_link  # the engine's UI link of a workflow, where it has one
        # Who may approve, and in which repository: without it a webhook review cannot be bound to a
        # rollout's pull request, so none counts (the gate's own reading of the PR still does).
        self.reviewers = reviewers
        self.policy_loader, self.clock = policy_loader, clock
        self._policies: dict[str, Policy] = {}
        self._inbox_signal = threading.Event()
        self.workers = KeyedWorkers(settings.reconcile_workers)
        # The inbox has a worker of its own (never queued behind the rollouts' jobs), and while it starts
        # a new rollout the rollouts' jobs give way between two rollouts: event -> first commit stays
        # short however many rollouts are being judged.
        self.inbox_workers = KeyedWorkers(min(settings.reconcile_workers, 1))
        self.precedence = Precedence(max_wait_s=EVENT_PRECEDENCE_S)
        self._model_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.actions: ActionHook | None = None
        # With replicas on a shared database only the leader reconciles (controller/leadership.py); with
        # shards, only the models it owns, each model's writes in its shard's scope (controller/sharding.py).
        self.leads: Callable[[], bool] = lambda: True
        self.owns: Callable[[str | None], bool] = lambda model: True
        self.scope: Callable[[str | None], AbstractContextManager[None]] = lambda model: nullcontext()
        # The forecast before a rollout starts and the thin-evidence switch (controller.policy_choice).
        self.policy_choice: PolicyChoiceHook | None = None

    # -- inbox ---------------------------------------------------------------------------------
    def process_inbox(self, limit: int = 500) -> int:
        """Turns stored deliveries into rollouts or approvals; returns how many were settled."""
        done = 0
        for item in self.store.pending_inbox(limit):
            try:
                if item.kind == "registry":
                    self._registry_event(item)
                else:
                    self._approval_event(item)
                done += 1
            except Exception as exc:  # left pending; the next tick retries it
                dependency = dependency_of(exc)
                if dependency is not None:
                    self.metrics.dependency_errors.labels(dependency).inc()
                event("event not processed yet", logging.WARNING, inbox_id=item.id, error=waiting_reason(exc))
        return done

    def _registry_event(self, item: InboxItem) -> None:
        ev = RegistryEvent(**item.event)
        rule = matching_rule(ev, self.settings.rules_for(ev.model))
        if rule is None:
            self.store.mark_processed(
                item.id, f"ignored: {ev.change} on {ev.model}/{ev.version} starts nothing"
            )
            return
        if self.registry is None:
            self.store.mark_processed(item.id, "ignored: no registry configured to find the baseline")
            return
        baseline = self.registry.version_for_alias(ev.model, rule.baseline_alias)
        if baseline is None or baseline == ev.version:
            why = "no version holds" if baseline is None else "the canary already holds"
            self.store.mark_processed(item.id, f"ignored: {why} alias {rule.baseline_alias!r} of {ev.model}")
            return
        for other in self.store.rollouts(active_only=True, model=ev.model):
            if (other.canary_version, other.baseline_version) == (ev.version, baseline):
                self.store.mark_processed(item.id, f"ignored: rollout {other.id} already rolls this out")
                return
        now = self.clock()
        record = RolloutRecord(
            id=rollout_id_for(ev),
            model=ev.model,
            baseline_version=baseline,
            canary_version=ev.version,
            policy=rule.policy,
            environment=rule.environment,
            trigger=f"{ev.source}:{ev.delivery_id}",
            created_at=item.received_at,
            updated_at=now,
            reason=f"{ev.source} {ev.change}: {ev.model} v{ev.version} vs baseline v{baseline}",
        )
        if self.store.create_rollout(record, inbox_id=item.id):
            event(
                "rollout created",
                rollout=record.id,
                model=record.model,
                canary=record.canary_version,
                baseline=record.baseline_version,
                trigger=record.trigger,
            )
        crash_point("after_rollout_created")

    def _approval_event(self, item: InboxItem) -> None:
        ev = ApprovalEvent(**item.event)
        if ev.outcome != "none":
            self.store.record_approval(ev)
        self.store.mark_processed(item.id, f"approval {ev.outcome} for {ev.pr_url or ev.repository}")

    # -- the tick ------------------------------------------------------------------------------
    def notify(self) -> None:
        """A delivery was stored: settle the inbox now, beside the rollouts' jobs, not after them."""
        self._inbox_signal.set()
        self.inbox_workers.submit("inbox", self._take_inbox)

    def tick(self) -> int:
        """One pass: the inbox, and every model's active rollouts as one job each on the worker pool;
        waits for the round at most `tick_deadline_s`. A model whose previous job still runs (stuck on
        a dependency until its call times out) is skipped, so it never holds the others up. A replica
        that does not lead does nothing, nor one that is stopping."""
        if self.workers.stopping.is_set() or not self.leads():
            return 0
        jobs = [f for f in [self.inbox_workers.submit("inbox", self._take_inbox)] if f is not None]
        by_model: dict[str, list[RolloutRecord]] = defaultdict(list)
        for record in self.store.rollouts(active_only=True):
            if self.owns(record.model):
                by_model[record.model].append(record)
        count = 0
        for model, records in by_model.items():
            job = self.workers.submit(f"model:{model}", partial(self._reconcile_model, model, records))
            if job is not None:
                jobs.append(job)
                count += len(records)
        for late in self.workers.wait(jobs, self.settings.tick_deadline_s):
            event("reconcile job still running after the tick deadline", logging.WARNING, job=repr(late))
        return count

    def _reconcile_model(self, model: str, records: list[RolloutRecord]) -> None:
        with self.model_lock(model), self.scope(model):
            if self.actions is not None:
                self.actions.apply_pending(model)
            self._supersede_older(records)
            for record in records:
                self.precedence.give_way()  # a new event's first commit goes first
                if self.workers.stopping.is_set():  # stopping: end the job before its next rollout
                    return
                if self.actions is None or not self.actions.held(record.id):
                    self._reconcile_timed(record.id)

    def model_lock(self, model: str) -> threading.Lock:
        """Held while a model's rollouts are reconciled (and by a drift rollback of that model)."""
        with self._locks_guard:
            return self._model_locks.setdefault(model, threading.Lock())

    def _take_inbox(self) -> None:
        """Settles new deliveries and starts the rollouts they created at once (event-to-commit latency),
        the rollouts' jobs giving way meanwhile; again while deliveries came during a round (their
        notify found this job running); a model whose job is running now is left to that job's next
        round."""
        while not self.workers.stopping.is_set():
            urgent = self._inbox_signal.is_set()  # a delivery came (a tick's own round is not urgent)
            self._inbox_signal.clear()
            if urgent:
                self.precedence.begin()
            try:
                self._take_inbox_once()
            finally:
                if urgent:
                    self.precedence.end()
            if not self._inbox_signal.is_set():
                return

    def _take_inbox_once(self) -> None:
        if self.workers.stopping.is_set() or not self.leads() or not self.owns(None):
            return
        with self.scope(None):
            if not self.process_inbox():
                return
        fresh: dict[str, list[RolloutRecord]] = defaultdict(list)
        for record in self.store.rollouts(active_only=True):
            fresh[record.model].append(record)
        for model, records in fresh.items():
            if records[-1].phase != RolloutPhase.PENDING or not self.owns(model):
                continue
            lock = self.model_lock(model)
            if not lock.acquire(blocking=False):
                continue
            try:
                with self.scope(model):
                    self._supersede_older(records)
                    self._reconcile_timed(records[-1].id)
            finally:
                lock.release()

    def _reconcile_timed(self, rollout_id: str) -> None:
        started = time.perf_counter()
        try:
            self.reconcile_one(rollout_id)
        except Exception as exc:  # retried next tick; the waiting reason names the dependency at fault
            reason = waiting_reason(exc)
            dependency = dependency_of(exc)
            if dependency is not None:
                self.metrics.dependency_errors.labels(dependency).inc()
            event("reconcile failed", logging.ERROR, rollout=rollout_id, error=repr(exc), waiting=reason)
            self.store.update(rollout_id, waiting_reason=reason)
        self.metrics.reconcile_seconds.observe(time.perf_counter() - started)

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stops the worker pools; True when every running job ended within `timeout_s`."""
        end = time.monotonic() + timeout_s
        self.inbox_workers.stopping.set()
        done = self.workers.shutdown(timeout_s)
        return self.inbox_workers.shutdown(max(0.0, end - time.monotonic())) and done

    def _supersede_older(self, records: list[RolloutRecord]) -> None:
        newest = records[-1]
        for old in records[:-1]:
            if old.phase in (RolloutPhase.SUPERSEDING, RolloutPhase.ROLLING_BACK):
                continue
            self._transition(old, Supersede(by_rollout=newest.id), superseded_by=newest.id)

    # -- one rollout ---------------------------------------------------------------------------
    def reconcile_one(self, rollout_id: str) -> None:
        record = self.store.get(rollout_id)
        if record is None or record.phase in TERMINAL:
            return
        if record.phase == RolloutPhase.PENDING:
            if not self._maybe_start(record):
                return
            record = self.store.get(rollout_id) or record
        assert record.workflow is not None, f"rollout {record.id} started without a workflow name"
        policy = self._policy(record.policy)
        status = self.engine.reconcile(record.workflow)
        crash_point("after_engine_reconcile")
        view = mirror(status, [s.weight for s in policy.steps], policy.bake_s, policy.watch_s)
        record = self._record_mirror(record, view)
        crash_point("after_mirror")
        if record.phase in TERMINAL:
            return  # its decision latency was observed by the transition that ended it
        self._drive(record, view, status, policy)

    def _maybe_start(self, record: RolloutRecord) -> bool:
        others = [r for r in self.store.rollouts(active_only=True, model=record.model) if r.id != record.id]
        if any(r.phase in STARTED for r in others):
            self.store.update(record.id, waiting_reason="waiting for the model's previous rollout to end")
            return False
        note = ""
        if self.policy_choice is not None:  # the forecast, and the thin-evidence switch (policy_choice.py)
            choice = self.policy_choice.choose(record)
            if choice.policy != record.policy:
                self.store.update(record.id, policy=choice.policy)
                record = self.store.get(record.id) or record
            note = choice.reason
        # The engine names the workflow after the rollout and refuses a second one for the same id, so a
        # crash between submit and the store update resubmits into the same workflow, never a new one.
        name = self.engine.submit(record.spec())
        crash_point("after_submit")
        self._transition(
            record,
            Started(workflow=name, note=note),
            workflow=name,
            started_at=self.clock(),
            waiting_reason=None,
        )
        event("rollout started", rollout=record.id, workflow=name)
        return True

    def _record_mirror(self, record: RolloutRecord, view: Mirror) -> RolloutRecord:
        for sha, purpose in view.commits:
            self.store.add_commit(record.id, sha, purpose)
        for step in view.steps:
            self.store.upsert_step(record.id, step)
        fields: dict[str, object] = {}
        if view.approval_id and view.approval_id != record.approval_id:
            fields["approval_id"] = view.approval_id
        if view.approval_url and view.approval_url != record.approval_url:
            fields["approval_url"] = view.approval_url
        if view.approval_head_sha and view.approval_head_sha != record.approval_head_sha:
            fields["approval_head_sha"] = view.approval_head_sha
        if view.approval_opened_at is not None and view.approval_opened_at != record.approval_opened_at:
            fields["approval_opened_at"] = view.approval_opened_at
        if view.waiting_reason != record.waiting_reason and record.phase != RolloutPhase.AWAITING_APPROVAL:
            fields["waiting_reason"] = view.waiting_reason
        self.store.update(record.id, **fields)
        record = self.store.get(record.id) or record
        for ev in view.events:
            record = self._apply_if_new(record, ev)
        return record

    def _apply_if_new(self, record: RolloutRecord, ev: RolloutEvent) -> RolloutRecord:
        if isinstance(ev, StepStarted) and record.step_index is not None and ev.index <= record.step_index:
            return record
        try:
            change = apply(record.state, ev)
        except IllegalTransition:
            return record  # already past it (mirrors repeat the whole history every tick)
        if change.after == change.before:
            return record
        extra = {"weight": ev.weight} if isinstance(ev, StepStarted) else {}
        return self._transition(record, ev, **extra) or record

    def transition(self, record: RolloutRecord, ev: RolloutEvent, **fields: object) -> RolloutRecord | None:
        """A transition the machine allows, stored, announced; None when stale or illegal (an action's)."""
        return self._transition(record, ev, **fields)

    def _transition(self, record: RolloutRecord, ev: RolloutEvent, **fields: object) -> RolloutRecord | None:
        try:
            change = apply(record.state, ev)
            updated = self.store.transition(record.id, change, **fields)
        except (IllegalTransition, StaleState) as exc:
            event("transition skipped", logging.WARNING, rollout=record.id, event=ev.kind, why=str(exc))
            return None
        event(
            "rollout transition",
            rollout=record.id,
            from_state=change.before.phase,
            to_state=change.after.phase,
            step=change.after.step_index,
            reason=change.reason,
        )
        if updated.phase in TERMINAL:
            self._finished(updated)
        if self.notifier is not None:
            self._announce(updated, change, ev)
        return updated

    def _announce(self, record: RolloutRecord, change: Transition, ev: RolloutEvent) -> None:
        """Hands the notifier what just happened; it queues and returns, and nothing here may fail a tick."""
        kind = notice_event(change, ev)
        if kind is None or self.notifier is None:
            return
        try:
            detail = self.store.detail(record.id)
            if detail is None:
                return
            links = notice_links(detail, self.link_templates, self.workflow_link)
            self.notifier.notify(build_notice(detail, change, ev, kind, self.clock(), links))
        except Exception as exc:
            event("notice not sent", logging.WARNING, rollout=record.id, error=repr(exc))

    def _finished(self, record: RolloutRecord) -> None:
        if record.finished_at is not None:
            self.metrics.decision_latency.labels(record.phase).observe(
                max(0.0, record.finished_at - record.created_at)
            )

    def _drive(self, record: RolloutRecord, view: Mirror, status: WorkflowStatus, policy: Policy) -> None:
        """What the controller still owes the workflow: stop, resume, time out, release the gate."""
        assert record.workflow is not None
        running = status.phase in ("Pending", "Running")
        if (
            record.phase in (RolloutPhase.ROLLING_BACK, RolloutPhase.SUPERSEDING)
            and running
            and not view.rollback_started
        ):
            self.engine.stop(record.workflow, record.reason)
            return
        if record.phase == RolloutPhase.PROMOTING and view.approval_suspended:
            self.engine.resume(record.workflow)
            return
        age = self.clock() - (record.started_at or record.created_at)
        if (
            record.phase in (RolloutPhase.CANARY, RolloutPhase.AWAITING_APPROVAL)
            and age > policy.max_duration_s
        ):
            if self._transition(record, TimedOut(after_s=age)) is not None:
                self.engine.stop(record.workflow, f"max duration {policy.max_duration_s:.0f} s exceeded")
            return
        if record.phase == RolloutPhase.AWAITING_APPROVAL:
            self._check_approval(record, view)

    def _check_approval(self, record: RolloutRecord, view: Mirror) -> None:
        assert record.workflow is not None
        outcome, actor = bound_decision(self.store, self.reviewers, record)
        if outcome is None and self.approval_gate is not None and record.approval_id:
            outcome = self.approval_gate.state(
                ApprovalRequest(
                    id=record.approval_id,
                    url=record.approval_url or "",
                    head_sha=record.approval_head_sha or "",
                    opened_at=record.approval_opened_at,
                )
            )
        if outcome == "approved":
            self.engine.resume(record.workflow)
            crash_point("after_resume")
            self._transition(record, Approved(by=actor or ""))
        elif outcome == "rejected":
            if self._transition(record, Rejected(by=actor or "")) is not None:
                self.engine.stop(record.workflow, f"approval rejected{' by ' + actor if actor else ''}")
        else:
            self.store.update(
                record.id, waiting_reason=f"waiting for approval {record.approval_url or ''}".strip()
            )

    def _policy(self, name: str) -> Policy:
        if name not in self._policies:
            self._policies[name] = self.policy_loader(name)
        return self._policies[name]

    def max_duration_s(self, policy_name: str) -> float | None:
        """The policy's max duration, for the deadline metric; None when the policy cannot be loaded."""
        try:
            return self._policy(policy_name).max_duration_s
        except Exception:  # a scrape must not fail on a policy file that went missing
            return None
