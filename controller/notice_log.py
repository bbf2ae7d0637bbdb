"""The log of notifications sent: what became of each notice on each channel (delivered, failed after
its retries, dropped), so a rollout's page can show what people were actually told, not only what
the controller meant to tell them.

The notifier reports each notice as it settles (`canaryflow.adapters.notify.delivery`, `on_settled`,
from the channel's worker thread); this store keeps it in the controller's database as its own schema
component (`controller_notice_log`), shared by every replica where the database is (any replica's
notifier writes, unfenced: a notice it sent was sent). The outbox stays what it is, the notices
still owed: a notice is in the outbox until it settles, then here. The log is bounded (the oldest
rows beyond `KEEP` go).
"""

from __future__ import annotations

import threading
from pathlib import Path

from canaryflow.adapters.database import Database, Migration, as_database
from canaryflow.kernel.contracts.notifications import NoticeDelivery

KEEP = 200_000  # rows kept; one rollout sends a handful of notices per channel
_PRUNE_EVERY = 1000  # inserts between prunes

_MIGRATIONS = (
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS cf_notice_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL, channel TEXT NOT NULL,
    event TEXT NOT NULL, headline TEXT NOT NULL, notice_at REAL NOT NULL, at REAL NOT NULL,
    outcome TEXT NOT NULL, attempts INTEGER NOT NULL, error TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS cf_notice_deliveries_rollout ON cf_notice_deliveries (rollout_id, id)
""",
    ),
)
_COLUMNS = ("rollout_id", "channel", "event", "headline", "notice_at", "at", "outcome", "attempts", "error")
_INSERT = (
    f"INSERT INTO cf_notice_deliveries ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)
_PRUNE = "DELETE FROM cf_notice_deliveries WHERE id <= (SELECT MAX(id) FROM cf_notice_deliveries) - ?"


class NoticeLog:
    def __init__(self, database: Database | Path | str) -> None:
        self.db = as_database(database)
        self.db.migrate("controller_notice_log", _MIGRATIONS)
        self._inserts = 0
        self._count = threading.Lock()  # the notifier's channel workers record at once

    def record(self, delivery: NoticeDelivery) -> None:
        values = delivery.model_dump(mode="json")
        with self._count:
            self._inserts += 1
            prune = self._inserts % _PRUNE_EVERY == 0
        with self.db.transaction(fenced=False) as db:
            db.execute(_INSERT, tuple(values[c] for c in _COLUMNS))
            if prune:
                db.execute(_PRUNE, (KEEP,))

    def of_rollout(self, rollout_id: str, limit: int = 500) -> list[NoticeDelivery]:
        """The rollout's notices as they settled, oldest first (the newest `limit`)."""
        rows = self.db.query(
            f"SELECT {', '.join(_COLUMNS)} FROM cf_notice_deliveries WHERE rollout_id = ? "
            "ORDER BY id DESC LIMIT ?",
            (rollout_id, limit),
        )
        return [
            NoticeDelivery.model_validate({c: row[i] for i, c in enumerate(_COLUMNS)})
            for row in reversed(rows)
        ]

    def close(self) -> None:
        self.db.close()
