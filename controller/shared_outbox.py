"""The notifier's outbox in the replicas' shared database: a notice one replica owed when it died is
sent by another.

With one controller the outbox is a SQLite file beside the store (`controller/notice_outbox.py`):
the next process on that file owns whatever is left in it. Replicas on PostgreSQL cannot share that
file, and a notice kept only in a dead leader's file would never be sent. Here every row carries
its **owner** (the replica's identity, `controller.leadership.replica_identity`), and every replica
keeps a heartbeat row (`cf_notify_owners`) fresh while its notifier runs. A row whose owner has not
been seen for `orphan_after_s` is **adopted** by the next replica to look (`adopt`, which each
channel's worker calls every few seconds, and `pending` at its start), in one `UPDATE ... RETURNING`,
so two replicas never both adopt a row. A clean `close` removes the heartbeat, so the rows it still
held are adopted at once rather than after the timeout.

Delivery stays at-least-once, as with the file: a replica that dies after a send and before the
row's delete leaves a notice that goes out again (same notice, so a CloudEvent keeps its id). The
per-channel bound is counted in the same transaction as the insert; two replicas adding at the
same instant may each see room for one more (the bound protects memory, which is per replica).
Writes are unfenced: a notice is owed whoever leads.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from canaryflow.adapters.database import Database, Migration
from canaryflow.kernel.contracts.notifications import RolloutNotice

log = logging.getLogger("canaryflow.notify")
COMPONENT = "notify_outbox_shared"
_MIGRATIONS = (
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS cf_notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, notice TEXT NOT NULL,
    queued_at REAL NOT NULL, owner TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS cf_notify_outbox_channel ON cf_notify_outbox (channel, id);
CREATE TABLE IF NOT EXISTS cf_notify_owners (owner TEXT PRIMARY KEY, seen_at REAL NOT NULL)
""",
    ),
)
_ALIVE = "SELECT owner FROM cf_notify_owners WHERE seen_at >= ?"


class SharedNoticeOutbox:
    """The `Outbox` port (`canaryflow/adapters/notify/base.py`) on the controller's `Database`."""

    def __init__(self, database: Database, owner: str, orphan_after_s: float = 15.0) -> None:
        if orphan_after_s <= 0:
            raise ValueError(f"orphan_after_s: must be above 0, got {orphan_after_s}")
        self.db, self.owner, self.orphan_after_s = database, owner, orphan_after_s
        self.db.migrate(COMPONENT, _MIGRATIONS)
        self._lock = threading.Lock()  # one process's adds count and insert one at a time
        self._beat()

    def describe(self) -> str:
        return f"{self.db.describe()} (shared notification outbox, owner {self.owner})"

    def _beat(self) -> None:
        with self.db.transaction(fenced=False) as db:
            db.execute(
                "INSERT INTO cf_notify_owners (owner, seen_at) VALUES (?, ?) "
                "ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at",
                (self.owner, self.db.now()),
            )

    def add(self, channel: str, notice: RolloutNotice, limit: int) -> int | None:
        with self._lock, self.db.transaction(fenced=False) as db:
            held = db.execute("SELECT COUNT(*) FROM cf_notify_outbox WHERE channel = ?", (channel,))
            if int(held.fetchone()[0]) >= limit:
                return None
            row = db.execute(
                "INSERT INTO cf_notify_outbox (channel, notice, queued_at, owner) VALUES (?, ?, ?, ?) "
                "RETURNING id",
                (channel, notice.model_dump_json(), time.time(), self.owner),
            ).fetchone()
            return int(row[0])

    def remove(self, row_id: int) -> None:
        with self.db.transaction(fenced=False) as db:
            db.execute("DELETE FROM cf_notify_outbox WHERE id = ?", (row_id,))

    def pending(self, channel: str) -> list[tuple[int, RolloutNotice]]:
        """At a notifier's start: the channel's rows this replica owns, its own from an earlier life
        under the same identity and every orphan adopted now, oldest first."""
        self.adopt(channel)
        rows = self.db.query(
            "SELECT id, notice FROM cf_notify_outbox WHERE channel = ? AND owner = ? ORDER BY id",
            (channel, self.owner),
        )
        return self._parsed(channel, rows)

    def adopt(self, channel: str) -> list[tuple[int, RolloutNotice]]:
        """The channel's rows whose owner is gone (no heartbeat for `orphan_after_s`), now this
        replica's; and this replica's heartbeat renewed."""
        self._beat()
        with self.db.transaction(fenced=False) as db:
            rows = db.execute(
                f"UPDATE cf_notify_outbox SET owner = ? WHERE channel = ? AND owner <> ? "
                f"AND owner NOT IN ({_ALIVE}) RETURNING id, notice",
                (self.owner, channel, self.owner, self.db.now() - self.orphan_after_s),
            ).fetchall()
        adopted = sorted(self._parsed(channel, rows), key=lambda item: item[0])
        if adopted:
            log.info(
                "notifications adopted from a replica that is gone",
                extra={"fields": {"channel": channel, "count": len(adopted)}},
            )
        return adopted

    def _parsed(self, channel: str, rows: list[Any]) -> list[tuple[int, RolloutNotice]]:
        found: list[tuple[int, RolloutNotice]] = []
        for row in rows:
            row_id, text = row[0], row[1]
            try:
                found.append((int(row_id), RolloutNotice.model_validate_json(text)))
            except ValueError as exc:  # it cannot be sent: dropped, and said so
                self.remove(int(row_id))
                log.error(
                    "notification in the outbox unreadable, dropped",
                    extra={"fields": {"channel": channel, "error": str(exc)[:200]}},
                )
        return found

    def channels(self) -> dict[str, int]:
        rows = self.db.query("SELECT channel, COUNT(*) FROM cf_notify_outbox GROUP BY channel")
        return {str(name): int(count) for name, count in rows}

    def close(self) -> None:
        """The heartbeat goes, so another replica adopts what this one still held at once. The
        database is the controller's, shared with its stores: it stays open."""
        with self.db.transaction(fenced=False) as db:
            db.execute("DELETE FROM cf_notify_owners WHERE owner = ?", (self.owner,))
