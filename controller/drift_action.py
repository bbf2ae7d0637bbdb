"""The drift monitor's opt-in response (`on_drift: rollback` in the drift policy): a champion whose
traffic drifted is rolled back to the champion before it.

The way back is the one a failed watch after promotion takes (`PromotionRollback`: the promoting
rollout's own rollback step, run again with reason "drift: ..."): git restores the previous version's
manifests in a commit carrying the rollout's trailers, the `champion` alias goes back, the drifted
version is tagged rejected and loses the tags its promotion gave. The controller keeps the audit: a
row here per decision (acted or not, and why), the commit on the promoting rollout's record (purpose
`drift-rollback`), a `rolled_back` notice and a log event.

When it does not act, it says why (the monitor puts it in the drift event, notice and API):
- no previous champion: the version became champion outside canaryflow (no promoting rollout);
- a rollout of the model is in progress: it owns the model's traffic until it ends.

Once per promotion: the row for a promoting rollout is written (unique) before the rollback runs, so a
second detection, a second thread or a restarted controller finds it and does not act again. A rollback
that failed or was cut short by a crash stays `acting` and is run again (it is idempotent) until it
lands, or is given up once another rollout of the model started. The rows live in the controller's
database (component `drift_actions`), so they survive a restart, and the champion source reads them:
after a rollback the restored version is the champion that the monitor watches, with a reference of
its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from canaryflow.adapters.database import Database, Migration, as_database
from canaryflow.kernel.contracts.drift import DriftVerdict
from canaryflow.kernel.contracts.notifications import NoticeEvent, RolloutNotice
from canaryflow.kernel.contracts.phases import RolloutPhase
from canaryflow.kernel.ports import Notifier, PromotionRollback
from controller.observability import event
from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore

COMMIT_PURPOSE = "drift-rollback"
ActionState = Literal["acting", "rolled_back", "not_acted"]

_MIGRATIONS = (
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS cf_drift_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, version TEXT NOT NULL,
    rollout_id TEXT, restored_version TEXT, state TEXT NOT NULL, reason TEXT NOT NULL,
    detected_at REAL NOT NULL, updated_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    commit_sha TEXT, error TEXT, retry_at REAL);
CREATE UNIQUE INDEX IF NOT EXISTS cf_drift_actions_once ON cf_drift_actions (rollout_id)
    WHERE state != 'not_acted';
CREATE INDEX IF NOT EXISTS cf_drift_actions_model ON cf_drift_actions (model, id)
""",
    ),
)


class DriftAction(BaseModel):
    """One decision on a detection: `acting` (the rollback is decided, not yet landed), `rolled_back`
    or `not_acted` (`reason` says why)."""

    id: int
    model: str
    version: str
    rollout_id: str | None
    restored_version: str | None
    state: ActionState
    reason: str
    detected_at: float
    updated_at: float
    attempts: int
    commit_sha: str | None
    error: str | None


class DriftActions:
    """The decisions, in the controller's database (their own table and schema version); written by
    the leader only (fenced transactions)."""

    def __init__(self, database: Database | Path | str) -> None:
        self.db = as_database(database)
        self.db.migrate("drift_actions", _MIGRATIONS)

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[DriftAction]:
        return [DriftAction(**dict(r)) for r in self.db.query(sql, args)]

    def _write(self, sql: str, args: Sequence[object]) -> None:
        with self.db.transaction() as db:
            db.execute(sql, args)

    def begin(self, model: str, version: str, rollout: RolloutRecord, reason: str, at: float) -> int | None:
        """The decision to roll `rollout` back; None when one was taken before (exactly once)."""
        with self.db.transaction() as db:
            row = db.execute(
                "INSERT INTO cf_drift_actions (model, version, rollout_id, restored_version, state, "
                "reason, detected_at, updated_at) VALUES (?, ?, ?, ?, 'acting', ?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING id",
                (model, version, rollout.id, rollout.baseline_version, reason, at, at),
            ).fetchone()
        return int(row[0]) if row is not None else None

    def not_acted(self, model: str, version: str, reason: str, at: float) -> None:
        self._write(
            "INSERT INTO cf_drift_actions (model, version, state, reason, detected_at, updated_at) "
            "VALUES (?, ?, 'not_acted', ?, ?, ?)",
            (model, version, reason, at, at),
        )

    def landed(self, action_id: int, sha: str, at: float) -> None:
        self._write(
            "UPDATE cf_drift_actions SET state = 'rolled_back', commit_sha = ?, updated_at = ?, "
            "attempts = attempts + 1, error = NULL, retry_at = NULL WHERE id = ?",
            (sha or None, at, action_id),
        )

    def failed(self, action_id: int, error: str, at: float, retry_at: float) -> None:
        self._write(
            "UPDATE cf_drift_actions SET error = ?, updated_at = ?, attempts = attempts + 1, "
            "retry_at = ? WHERE id = ?",
            (error, at, retry_at, action_id),
        )

    def abandon(self, action_id: int, reason: str, at: float) -> None:
        """A decided rollback given up (the model moved on before it landed): no longer counts as done."""
        self._write(
            "UPDATE cf_drift_actions SET state = 'not_acted', reason = ?, updated_at = ?, "
            "retry_at = NULL WHERE id = ?",
            (reason, at, action_id),
        )

    def of_rollout(self, rollout_id: str) -> DriftAction | None:
        rows = self._rows(
            "SELECT * FROM cf_drift_actions WHERE rollout_id = ? AND state != 'not_acted'", (rollout_id,)
        )
        return rows[0] if rows else None

    def due(self, now: float) -> list[DriftAction]:
        """Decided rollbacks not landed yet (failed, or cut short by a stop) whose retry is due."""
        return self._rows(
            "SELECT * FROM cf_drift_actions WHERE state = 'acting' AND (retry_at IS NULL OR retry_at <= ?) "
            "ORDER BY id",
            (now,),
        )

    def rolled_back(self) -> dict[str, float]:
        """Promoting rollout id -> when its drift rollback landed (for the champion source)."""
        rows = self._rows("SELECT * FROM cf_drift_actions WHERE state = 'rolled_back'")
        return {r.rollout_id: r.updated_at for r in rows if r.rollout_id}

    def latest(self, model: str) -> DriftAction | None:
        rows = self._rows("SELECT * FROM cf_drift_actions WHERE model = ? ORDER BY id DESC LIMIT 1", (model,))
        return rows[0] if rows else None

    def of_model(self, model: str) -> list[DriftAction]:
        return self._rows("SELECT * FROM cf_drift_actions WHERE model = ? ORDER BY id", (model,))


class DriftResponder:
    """Decides and carries out the response to a detection (see the module docstring)."""

    def __init__(
        self,
        actions: DriftActions,
        store: RolloutStore,
        rollback: PromotionRollback,
        *,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        retry_s: float = 60.0,
    ) -> None:
        self.actions, self.store, self.rollback, self.notifier = actions, store, rollback, notifier
        self.clock, self.retry_s = clock, retry_s
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.lock_for: Callable[[str], AbstractContextManager[object]] = self._own_lock

    def _own_lock(self, model: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(model, threading.Lock())

    def guard(self, lock_for: Callable[[str], AbstractContextManager[object]]) -> None:
        """Takes the reconcile loop's lock of a model while deciding and acting, so that no rollout of
        that model starts between the check that none is in progress and the rollback commit."""
        self.lock_for = lock_for

    def respond(self, model: str, version: str, verdict: DriftVerdict) -> str:
        """Acts on a detection for `model`'s champion `version`; returns the one line for the event."""
        now = self.clock()
        fired = [c.name for c in verdict.checks if c.drift] or ["drift"]
        reason = f"drift: v{version} drifted from its reference ({', '.join(fired)})"
        with self.lock_for(model):
            busy = self.store.rollouts(active_only=True, model=model)
            if busy:
                return self._decline(model, version, f"rollout {busy[-1].id} of {model} is in progress", now)
            promoted = self._promoting_rollout(model, version)
            if promoted is None:
                why = f"no previous champion known (v{version} was not promoted by a canaryflow rollout)"
                return self._decline(model, version, why, now)
            done = self.actions.of_rollout(promoted.id)
            action_id = None if done else self.actions.begin(model, version, promoted, reason, now)
            if action_id is None:
                return f"not rolled back again: rollout {promoted.id} was handled before"
            event("drift: rolling back", model=model, version=version, to=promoted.baseline_version,
                  rollout=promoted.id, reason=reason)  # fmt: skip
            return self._run(action_id, promoted, reason)

    def resume(self) -> None:
        """Runs again the rollbacks that were decided but did not land (an error, a stop mid-way); one
        whose model saw a rollout since the decision is given up: going back now would undo that one."""
        for action in self.actions.due(self.clock()):
            record = self.store.get(action.rollout_id or "")
            if record is None:
                continue
            with self.lock_for(action.model):
                later = [
                    r
                    for r in self.store.rollouts(model=action.model)
                    if r.id != record.id and r.created_at >= action.detected_at
                ]
                if later:
                    why = f"abandoned: rollout {later[-1].id} started before the rollback landed"
                    self.actions.abandon(action.id, why, self.clock())
                    event("drift: rollback abandoned", logging.WARNING, model=action.model, why=why)
                    continue
                self._run(action.id, record, action.reason)

    def _promoting_rollout(self, model: str, version: str) -> RolloutRecord | None:
        """The rollout that made `version` champion, the latest if several did; it names the previous one."""
        promoted = [
            r
            for r in self.store.rollouts(model=model)
            if r.phase == RolloutPhase.PROMOTED
            and r.canary_version == version
            and r.baseline_version != version
        ]
        return max(promoted, key=lambda r: r.finished_at or r.updated_at, default=None)

    def _decline(self, model: str, version: str, why: str, now: float) -> str:
        self.actions.not_acted(model, version, why, now)
        event("drift: not rolled back", logging.WARNING, model=model, version=version, why=why)
        return f"not rolled back: {why}"

    def _run(self, action_id: int, rollout: RolloutRecord, reason: str) -> str:
        restored = rollout.baseline_version
        try:
            sha = self.rollback.rollback(rollout.spec(), reason)
        except Exception as exc:  # git or the registry away: retried by `resume` until it lands
            self.actions.failed(action_id, repr(exc), self.clock(), self.clock() + self.retry_s)
            event("drift: rollback failed, will retry", logging.ERROR, model=rollout.model,
                  rollout=rollout.id, error=repr(exc))  # fmt: skip
            return f"rolling back to v{restored}: failed ({exc}), retried every {self.retry_s:.0f} s"
        now = self.clock()
        self.actions.landed(action_id, sha, now)
        if sha:
            self.store.add_commit(rollout.id, sha, COMMIT_PURPOSE)
        event("drift: rolled back", model=rollout.model, version=rollout.canary_version, to=restored,
              rollout=rollout.id, commit=sha)  # fmt: skip
        if self.notifier is not None:
            self.notifier.notify(
                RolloutNotice(
                    event=NoticeEvent.ROLLED_BACK,
                    rollout_id=rollout.id,
                    model=rollout.model,
                    baseline_version=restored,
                    canary_version=rollout.canary_version,
                    environment=rollout.environment,
                    phase=RolloutPhase.ROLLED_BACK,
                    at=now,
                    reason=reason,
                )
            )
        return f"rolled back to v{restored}" + (f" (commit {sha[:12]})" if sha else "")
