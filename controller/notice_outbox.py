"""The notifier's outbox: every notice a channel still owes, in a small SQLite file, so a kill loses none.

The notify adapter's `Outbox` port (`canaryflow/adapters/notify/base.py`), kept here with the
controller's other SQLite state because stores are the application's (an adapter imports no other
adapter, `canaryflow/adapters/database/` included); `canaryflow.app.wiring` hands it to the notifier.

A notice is written here before it is queued and removed once it is delivered or finally given up on;
what is left when the controller dies is queued again by the next notifier on the same file
(at-least-once: a notice delivered just before the kill may go out twice, as the same notice, so a
CloudEvent keeps its id). The file is separate from the rollout store: its writes never contend with
the reconcile loop's, and a broken outbox cannot harm the store. Each channel holds at most `limit`
rows; `add` refuses beyond that in the same transaction that counts, so two threads cannot overfill it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from canaryflow.adapters.database.sqlite import Migration, connect, migrate
from canaryflow.kernel.contracts.notifications import RolloutNotice

log = logging.getLogger("canaryflow.notify")
COMPONENT = "notify_outbox"
MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE IF NOT EXISTS notify_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, notice TEXT NOT NULL,
            queued_at REAL NOT NULL);
        CREATE INDEX IF NOT EXISTS notify_outbox_channel ON notify_outbox (channel, id)
        """,
    )
]
# The outbox's own writes are tiny; a lock held longer than this is a fault, not a reason to hold a
# reconcile tick (the caller falls back to memory when it is exceeded).
_BUSY_TIMEOUT_MS = 250


class OutboxUnusable(RuntimeError):
    """The file cannot be opened as an outbox (corrupt, newer, not a file); the message names it."""


class NoticeOutbox:
    """Rows of (channel, notice as JSON); one connection shared by the workers behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            self._db = connect(path, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            migrate(self._db, COMPONENT, MIGRATIONS)
        except Exception as exc:
            if self._db is not None:
                self._db.close()
            raise OutboxUnusable(f"{path}: {exc}") from exc

    def describe(self) -> str:
        return str(self.path)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError(f"{self.path}: the outbox is closed")
        return self._db

    def add(self, channel: str, notice: RolloutNotice, limit: int) -> int | None:
        """The new row's id, or None when the channel already holds `limit` notices."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                held = db.execute("SELECT COUNT(*) FROM notify_outbox WHERE channel = ?", (channel,))
                if held.fetchone()[0] >= limit:
                    db.execute("ROLLBACK")
                    return None
                cursor = db.execute(
                    "INSERT INTO notify_outbox (channel, notice, queued_at) VALUES (?, ?, ?)",
                    (channel, notice.model_dump_json(), time.time()),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def remove(self, row_id: int) -> None:
        with self._lock:
            self._conn().execute("DELETE FROM notify_outbox WHERE id = ?", (row_id,))

    def pending(self, channel: str) -> list[tuple[int, RolloutNotice]]:
        """The channel's notices, oldest first (a row that no longer parses is dropped: it cannot be sent)."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT id, notice FROM notify_outbox WHERE channel = ? ORDER BY id", (channel,)
            )
            found: list[tuple[int, RolloutNotice]] = []
            for row_id, text in rows.fetchall():
                try:
                    found.append((int(row_id), RolloutNotice.model_validate_json(text)))
                except ValueError as exc:
                    self._conn().execute("DELETE FROM notify_outbox WHERE id = ?", (row_id,))
                    log.error(
                        "notification in the outbox unreadable, dropped",
                        extra={"fields": {"channel": channel, "error": str(exc)[:200]}},
                    )
            return found

    def channels(self) -> dict[str, int]:
        """Every channel that has notices waiting, with how many."""
        with self._lock:
            rows = self._conn().execute("SELECT channel, COUNT(*) FROM notify_outbox GROUP BY channel")
            return {str(name): int(count) for name, count in rows.fetchall()}

    def adopt(self, channel: str) -> list[tuple[int, RolloutNotice]]:
        """One process uses the file: what an earlier one left was taken by `pending` at the start."""
        return []

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
