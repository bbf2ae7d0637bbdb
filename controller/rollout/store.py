"""The rollout store: SQLite (WAL mode) or a shared PostgreSQL database, every change one transaction.

It is the controller's memory across restarts: the inbox of accepted webhook deliveries (written
before the delivery is acknowledged, so an acknowledged event is never lost, and keyed by delivery id,
so a redelivery is recognised), the rollouts with their state, steps, verdicts, commits and the
transition log. The local workflow runner keeps its own tables in the same database.

Its SQL is written once for both backends (canaryflow/adapters/database). Every write but accepting a
delivery is fenced: with several replicas on one PostgreSQL database only the leader's writes land
(`controller/leadership.py`); a delivery is accepted by any replica and deduplicated here.
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from canaryflow.adapters.database import Connection, Database, Migration, as_database
from canaryflow.adapters.database.base import Row
from canaryflow.kernel.rollout import ACTIVE, Transition
from controller.rollout.records import (
    CommitRecord,
    InboxItem,
    RolloutDetail,
    RolloutRecord,
    StepRecord,
    TransitionRecord,
)
from controller.webhooks.events import ApprovalEvent

_MIGRATIONS = (
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS cf_inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL, delivery_id TEXT NOT NULL, kind TEXT NOT NULL, event TEXT NOT NULL,
    received_at REAL NOT NULL, processed_at REAL, outcome TEXT,
    UNIQUE (source, delivery_id));
CREATE INDEX IF NOT EXISTS cf_inbox_pending ON cf_inbox (processed_at);
CREATE TABLE IF NOT EXISTS cf_rollouts (
    id TEXT PRIMARY KEY, model TEXT NOT NULL, baseline_version TEXT NOT NULL, canary_version TEXT NOT NULL,
    policy TEXT NOT NULL, environment TEXT NOT NULL, phase TEXT NOT NULL, step_index INTEGER,
    weight INTEGER NOT NULL DEFAULT 0, workflow TEXT, trigger TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, updated_at REAL NOT NULL, started_at REAL, finished_at REAL,
    reason TEXT NOT NULL DEFAULT '', waiting_reason TEXT, approval_id TEXT, approval_url TEXT,
    superseded_by TEXT, ready_at REAL);
CREATE INDEX IF NOT EXISTS cf_rollouts_model ON cf_rollouts (model, phase);
CREATE TABLE IF NOT EXISTS cf_steps (
    rollout_id TEXT NOT NULL, idx INTEGER NOT NULL, weight INTEGER NOT NULL, started_at REAL,
    commit_sha TEXT, status TEXT NOT NULL, verdict TEXT, PRIMARY KEY (rollout_id, idx));
CREATE TABLE IF NOT EXISTS cf_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL, at REAL NOT NULL,
    from_phase TEXT NOT NULL, to_phase TEXT NOT NULL, event TEXT NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS cf_transitions_rollout ON cf_transitions (rollout_id, id);
CREATE TABLE IF NOT EXISTS cf_commits (
    rollout_id TEXT NOT NULL, sha TEXT NOT NULL, purpose TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (rollout_id, sha));
CREATE TABLE IF NOT EXISTS cf_approvals (
    id INTEGER PRIMARY KEY AUTOINCREMENT, pr_key TEXT NOT NULL, outcome TEXT NOT NULL, actor TEXT NOT NULL,
    at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS cf_approvals_key ON cf_approvals (pr_key, id);
""",
    ),
    # Issue 15: replay keys of deliveries (a body digest besides the id), reviews bound to their pull
    # request and commit, and the commit and time an approval request was made for.
    Migration(
        2,
        """
CREATE TABLE IF NOT EXISTS cf_delivery_keys (
    source TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (source, key));
CREATE TABLE IF NOT EXISTS cf_reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT, repository TEXT NOT NULL, number INTEGER NOT NULL,
    head_sha TEXT NOT NULL, outcome TEXT NOT NULL, actor TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS cf_reviews_pr ON cf_reviews (repository, number, id);
ALTER TABLE cf_rollouts ADD COLUMN approval_head_sha TEXT;
ALTER TABLE cf_rollouts ADD COLUMN approval_opened_at REAL
""",
    ),
)

_ROLLOUT_COLUMNS = list(RolloutRecord.model_fields)


class _Replayed(Exception):
    """A replay key was seen before: the whole insert is rolled back."""


class StaleState(RuntimeError):
    """The rollout moved on since it was read; the caller re-reads and decides again."""


class RolloutStore:
    def __init__(self, database: Database | Path | str) -> None:
        self.db = as_database(database)
        self.path = Path(self.db.describe())  # where it is, for messages
        self.db.migrate("controller", _MIGRATIONS)

    def close(self) -> None:
        """SQLite checkpoints its WAL first: after a clean stop `<db>` alone holds everything."""
        self.db.close()

    def _tx(self, *, fenced: bool = True) -> AbstractContextManager[Connection]:
        return self.db.transaction(fenced=fenced)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        return self.db.query(sql, args)

    # -- inbox -------------------------------------------------------------------------------------
    def accept_delivery(
        self,
        source: str,
        delivery_id: str,
        kind: str,
        event: dict[str, Any],
        keys: tuple[str, ...] = (),
    ) -> bool:
        """Stores a verified delivery; False when its delivery id or any of its replay `keys` (e.g. the
        digest of its body) was stored before: a redelivery, or a capture replayed under a new id."""
        try:
            with self._tx(fenced=False) as db:  # any replica accepts deliveries
                cur = db.execute(
                    "INSERT INTO cf_inbox (source, delivery_id, kind, event, received_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (source, delivery_id, kind, json.dumps(event), time.time()),
                )
                if cur.rowcount != 1:
                    return False
                for key in dict.fromkeys((delivery_id, *keys)):
                    seen = db.execute(
                        "INSERT INTO cf_delivery_keys (source, key) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (source, key),
                    )
                    if seen.rowcount != 1:
                        raise _Replayed(key)
                return True
        except _Replayed:
            return False

    def pending_inbox(self, limit: int = 100) -> list[InboxItem]:
        rows = self._query("SELECT * FROM cf_inbox WHERE processed_at IS NULL ORDER BY id LIMIT ?", (limit,))
        return [_inbox(r) for r in rows]

    def inbox(self, limit: int = 100_000) -> list[InboxItem]:
        return [_inbox(r) for r in self._query("SELECT * FROM cf_inbox ORDER BY id LIMIT ?", (limit,))]

    def mark_processed(self, inbox_id: int, outcome: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE cf_inbox SET processed_at = ?, outcome = ? WHERE id = ? AND processed_at IS NULL",
                (time.time(), outcome, inbox_id),
            )

    # -- rollouts ----------------------------------------------------------------------------------
    def create_rollout(self, record: RolloutRecord, inbox_id: int | None = None) -> bool:
        """Inserts a pending rollout and marks its inbox item done, atomically; False if it exists."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM cf_rollouts WHERE id = ?", (record.id,)).fetchone():
                if inbox_id is not None:
                    db.execute(
                        "UPDATE cf_inbox SET processed_at=?, outcome=? WHERE id=? AND processed_at IS NULL",
                        (time.time(), f"rollout {record.id}", inbox_id),
                    )
                return False
            values = record.model_dump()
            db.execute(
                f"INSERT INTO cf_rollouts ({', '.join(_ROLLOUT_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in _ROLLOUT_COLUMNS)})",
                tuple(values[c] for c in _ROLLOUT_COLUMNS),
            )
            db.execute(
                "INSERT INTO cf_transitions (rollout_id, at, from_phase, to_phase, event, reason) "
                "VALUES (?, ?, '', 'pending', 'created', ?)",
                (record.id, record.created_at, record.reason),
            )
            if inbox_id is not None:
                db.execute(
                    "UPDATE cf_inbox SET processed_at=?, outcome=? WHERE id=? AND processed_at IS NULL",
                    (time.time(), f"rollout {record.id}", inbox_id),
                )
            return True

    def get(self, rollout_id: str) -> RolloutRecord | None:
        rows = self._query("SELECT * FROM cf_rollouts WHERE id = ?", (rollout_id,))
        return RolloutRecord(**dict(rows[0])) if rows else None

    def rollouts(
        self, *, active_only: bool = False, model: str | None = None, limit: int | None = None
    ) -> list[RolloutRecord]:
        """Oldest first; `limit` keeps the newest `limit` of them (None: all)."""
        sql, args = "SELECT * FROM cf_rollouts WHERE 1=1", list[object]()
        if active_only:
            sql += f" AND phase IN ({', '.join('?' for _ in ACTIVE)})"
            args += sorted(ACTIVE)
        if model is not None:
            sql += " AND model = ?"
            args.append(model)
        sql += " ORDER BY created_at, id"
        records = [RolloutRecord(**dict(r)) for r in self._query(sql, tuple(args))]
        return records[-limit:] if limit is not None else records

    def detail(self, rollout_id: str) -> RolloutDetail | None:
        record = self.get(rollout_id)
        if record is None:
            return None
        steps = [
            StepRecord(
                index=r["idx"],
                weight=r["weight"],
                started_at=r["started_at"],
                commit_sha=r["commit_sha"],
                status=r["status"],
                verdict=json.loads(r["verdict"]) if r["verdict"] else None,
            )
            for r in self._query("SELECT * FROM cf_steps WHERE rollout_id = ? ORDER BY idx", (rollout_id,))
        ]
        transitions = [
            TransitionRecord(
                at=r["at"],
                from_phase=r["from_phase"],
                to_phase=r["to_phase"],
                event=r["event"],
                reason=r["reason"],
            )
            for r in self._query(
                "SELECT * FROM cf_transitions WHERE rollout_id = ? ORDER BY id", (rollout_id,)
            )
        ]
        commits = self.commits_of(rollout_id)
        return RolloutDetail(**record.model_dump(), steps=steps, transitions=transitions, commits=commits)

    def transition(self, rollout_id: str, change: Transition, **fields: Any) -> RolloutRecord:
        """Applies a machine transition (and field updates) if the rollout is still where it was read."""
        now = time.time()
        updates: dict[str, Any] = {
            "phase": change.after.phase,
            "step_index": change.after.step_index,
            "updated_at": now,
            "reason": change.reason,
            **fields,
        }
        if change.after.phase not in ACTIVE:
            updates.setdefault("finished_at", now)
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE cf_rollouts SET {', '.join(f'{k} = ?' for k in updates)} "
                "WHERE id = ? AND phase = ? AND step_index IS NOT DISTINCT FROM ?",
                (*updates.values(), rollout_id, change.before.phase, change.before.step_index),
            )
            if cur.rowcount != 1:
                raise StaleState(f"rollout {rollout_id} is no longer {change.before.phase}")
            db.execute(
                "INSERT INTO cf_transitions (rollout_id, at, from_phase, to_phase, event, reason) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (rollout_id, now, change.before.phase, change.after.phase, change.event, change.reason),
            )
        record = self.get(rollout_id)
        assert record is not None
        return record

    def update(self, rollout_id: str, **fields: Any) -> None:
        """Field updates that are not state changes (workflow name, waiting reason, approval handle)."""
        if not fields:
            return
        with self._tx() as db:
            db.execute(
                f"UPDATE cf_rollouts SET {', '.join(f'{k} = ?' for k in fields)}, updated_at = ? "
                "WHERE id = ?",
                (*fields.values(), time.time(), rollout_id),
            )

    def upsert_step(self, rollout_id: str, step: StepRecord) -> bool:
        """Records a step's latest status; True when something changed. The mirror calls it for
        every step at every reconcile, mostly with what is stored already: that is found by a read,
        without taking the write lock (a write that would change nothing has nothing to fence)."""
        verdict = json.dumps(step.verdict, sort_keys=True) if step.verdict is not None else None
        new = (step.weight, step.started_at, step.commit_sha, step.status, verdict)
        columns = ("weight", "started_at", "commit_sha", "status", "verdict")
        rows = self._query(
            "SELECT * FROM cf_steps WHERE rollout_id = ? AND idx = ?", (rollout_id, step.index)
        )
        if rows and tuple(rows[0][c] for c in columns) == new:
            return False
        with self._tx() as db:
            db.execute(
                "INSERT INTO cf_steps (rollout_id, idx, weight, started_at, commit_sha, status, verdict) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rollout_id, idx) DO UPDATE SET "
                "weight = excluded.weight, started_at = excluded.started_at, "
                "commit_sha = excluded.commit_sha, status = excluded.status, verdict = excluded.verdict",
                (rollout_id, step.index, *new),
            )
            return True

    def add_commit(self, rollout_id: str, sha: str, purpose: str) -> bool:
        """True when the commit was new. The mirror repeats every commit of the history at every
        reconcile: one already recorded is found by a read, without taking the write lock."""
        if self._query("SELECT 1 FROM cf_commits WHERE rollout_id = ? AND sha = ?", (rollout_id, sha)):
            return False
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO cf_commits (rollout_id, sha, purpose, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (rollout_id, sha, purpose, time.time()),
            )
            return cur.rowcount == 1

    def commits_of(self, rollout_id: str) -> list[CommitRecord]:
        rows = self._query("SELECT * FROM cf_commits WHERE rollout_id = ? ORDER BY at, sha", (rollout_id,))
        return [CommitRecord(sha=r["sha"], purpose=r["purpose"], at=r["at"]) for r in rows]

    # -- approvals -----------------------------------------------------------------------------------
    def record_approval(self, ev: ApprovalEvent) -> None:
        """Remembers a pull-request decision with what binds it: repository, number, commit, time."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO cf_reviews (repository, number, head_sha, outcome, actor, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    ev.repository.lower(),
                    ev.pr_number,
                    ev.head_sha,
                    ev.outcome,
                    ev.actor,
                    ev.at or time.time(),
                ),
            )

    def decisions_for(
        self, repository: str, number: int, head_sha: str, since: float
    ) -> list[tuple[str, str]]:
        """(outcome, actor) recorded for exactly this pull request and commit at or after `since`, newest
        first: a review of another repository, another number or another commit is never among them."""
        rows = self._query(
            "SELECT outcome, actor FROM cf_reviews WHERE repository = ? AND number = ? AND head_sha = ? "
            "AND at >= ? ORDER BY at DESC, id DESC",
            (repository.lower(), number, head_sha, since),
        )
        return [(r["outcome"], r["actor"]) for r in rows]

    def counts_by_phase(self) -> dict[str, int]:
        return {
            r["phase"]: r["n"]
            for r in self._query("SELECT phase, COUNT(*) AS n FROM cf_rollouts GROUP BY phase")
        }

    def step_counts(self) -> dict[tuple[str, str], int]:
        """(model, step status) -> how many traffic steps ended (or run) so: the verdicts per model."""
        sql = (
            "SELECT r.model AS model, s.status AS status, COUNT(*) AS n FROM cf_steps s "
            "JOIN cf_rollouts r ON r.id = s.rollout_id GROUP BY r.model, s.status"
        )
        return {(r["model"], r["status"]): r["n"] for r in self._query(sql)}


def _inbox(row: Row) -> InboxItem:
    return InboxItem(
        id=row["id"],
        source=row["source"],
        delivery_id=row["delivery_id"],
        kind=row["kind"],
        event=json.loads(row["event"]),
        received_at=row["received_at"],
        processed_at=row["processed_at"],
        outcome=row["outcome"],
    )
