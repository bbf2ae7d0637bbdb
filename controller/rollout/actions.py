"""The record of the actions people and scripts took on rollouts (abort, promote, approve, pause, ...).

One row per action, keyed by its action id (given by the caller, or made up from the request), so a
repeated call finds the row it made the first time and changes nothing. An action is stored `pending`
before anything is done, then marked `applied` or `refused` by whoever applies it under the model's
lock (the request itself when the lock is free, else the reconcile loop's next tick), so an
acknowledged action survives a restart and is applied exactly once. The table lives in the
controller's database as its own schema component (`controller_actions`). Any replica stores a
request (unfenced); settling it is the leader's (fenced, canaryflow/adapters/database/base.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from canaryflow.adapters.database import Database, Migration, as_database
from canaryflow.adapters.database.base import Row

ActionKind = Literal["abort", "promote", "retry", "approve", "reject", "pause", "resume"]
ACTION_KINDS: tuple[ActionKind, ...] = ("abort", "promote", "retry", "approve", "reject", "pause", "resume")
ActionState = Literal["pending", "applied", "refused"]

_MIGRATIONS = (
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS cf_actions (
    id TEXT PRIMARY KEY, rollout_id TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL,
    actor TEXT NOT NULL, reason TEXT NOT NULL, requested_at REAL NOT NULL, state TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '', applied_at REAL, details TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS cf_actions_rollout ON cf_actions (rollout_id, requested_at);
CREATE INDEX IF NOT EXISTS cf_actions_pending ON cf_actions (state, model)
""",
    ),
)


class ActionRecord(BaseModel):
    id: str
    rollout_id: str
    model: str
    kind: ActionKind
    actor: str = Field(description="who asked: the person's login, or `token:<name>` for automation")
    reason: str
    requested_at: float
    state: ActionState = "pending"
    outcome: str = Field(default="", description="what applying it did, or why it was refused")
    applied_at: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ActionStore:
    def __init__(self, database: Database | Path | str) -> None:
        self.db = as_database(database)
        self.db.migrate("controller_actions", _MIGRATIONS)

    def close(self) -> None:
        self.db.close()

    def add(self, action: ActionRecord) -> tuple[ActionRecord, bool]:
        """Stores a pending action; (the stored one, False) when its id was stored before."""
        with self.db.transaction(fenced=False) as db:  # any replica takes a request
            cur = db.execute(
                "INSERT INTO cf_actions (id, rollout_id, model, kind, actor, reason, requested_at, state,"
                " outcome, details) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', '', ?) ON CONFLICT DO NOTHING",
                (
                    action.id,
                    action.rollout_id,
                    action.model,
                    action.kind,
                    action.actor,
                    action.reason,
                    action.requested_at,
                    json.dumps(action.details, sort_keys=True),
                ),
            )
            if cur.rowcount != 1:
                row = db.execute("SELECT * FROM cf_actions WHERE id = ?", (action.id,)).fetchone()
                return _record(row), False
        return action, True

    def get(self, action_id: str) -> ActionRecord | None:
        rows = self.db.query("SELECT * FROM cf_actions WHERE id = ?", (action_id,))
        return _record(rows[0]) if rows else None

    def of_rollout(self, rollout_id: str) -> list[ActionRecord]:
        """Oldest first."""
        rows = self.db.query(
            "SELECT * FROM cf_actions WHERE rollout_id = ? ORDER BY requested_at, id", (rollout_id,)
        )
        return [_record(r) for r in rows]

    def pending(self, model: str) -> list[ActionRecord]:
        rows = self.db.query(
            "SELECT * FROM cf_actions WHERE state = 'pending' AND model = ? ORDER BY requested_at, id",
            (model,),
        )
        return [_record(r) for r in rows]

    def settle(self, action_id: str, state: ActionState, outcome: str) -> bool:
        """Marks a pending action applied or refused; False when it was settled before (by another
        thread or an earlier run), so its effect is never applied twice."""
        with self.db.transaction() as db:
            cur = db.execute(
                "UPDATE cf_actions SET state = ?, outcome = ?, applied_at = ? "
                "WHERE id = ? AND state = 'pending'",
                (state, outcome, time.time(), action_id),
            )
            return cur.rowcount == 1

    def paused(self, rollout_id: str) -> ActionRecord | None:
        """The applied pause holding the rollout now (its newest applied pause/resume is a pause)."""
        rows = self.db.query(
            "SELECT * FROM cf_actions WHERE rollout_id = ? AND state = 'applied' AND kind IN "
            "('pause', 'resume') ORDER BY applied_at DESC, requested_at DESC LIMIT 1",
            (rollout_id,),
        )
        record = _record(rows[0]) if rows else None
        return record if record is not None and record.kind == "pause" else None


def _record(row: Row) -> ActionRecord:
    values = dict(row)
    values["details"] = json.loads(values["details"] or "{}")
    return ActionRecord(**values)
