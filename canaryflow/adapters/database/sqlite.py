"""SQLite for canaryflow's stores (the embedded default): one way to open a file, versioned schemas with
migrations, and `SqliteDatabase`, the `Database` backend (base.py) over one connection.

The controller's rollout store and the local workflow runner keep their tables in one file, each as a
*component* with its own schema version in `cf_schema`. Opening a store applies the migrations it has
not seen, in one transaction per component, so an upgrade either completes or leaves the file as it
was; a file written by a newer canaryflow is refused with a message instead of being misread.
Migration 1 of each component is written with `IF NOT EXISTS`, so a file made before schemas were
versioned is adopted as it is.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from canaryflow.adapters.database.base import (
    DatabaseError,
    Fence,
    Migration,
    SchemaError,
    check_numbering,
    newer_schema,
)

__all__ = ["Migration", "SchemaError", "SqliteDatabase", "connect", "migrate", "schema_version"]

_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS cf_schema (
    component TEXT PRIMARY KEY, version INTEGER NOT NULL, applied_at REAL NOT NULL)
"""


def connect(path: Path | str, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, rows by name."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=check_same_thread, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def schema_version(db: sqlite3.Connection, component: str) -> int:
    """The component's schema version in this file; 0 when it was never migrated."""
    db.execute(_SCHEMA_TABLE)
    row = db.execute("SELECT version FROM cf_schema WHERE component = ?", (component,)).fetchone()
    return int(row[0]) if row else 0


def migrate(db: sqlite3.Connection, component: str, migrations: Sequence[Migration]) -> int:
    """Applies the migrations newer than the file's version, all or none; returns the version now."""
    latest = check_numbering(component, migrations)
    db.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(db, component)
        if current > latest:
            raise newer_schema(component, current, latest)
        for migration in migrations[current:]:
            for statement in migration.statements():
                db.execute(statement)
        if latest != current:
            db.execute(
                "INSERT INTO cf_schema (component, version, applied_at) VALUES (?, ?, ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version, "
                "applied_at = excluded.applied_at",
                (component, latest, time.time()),
            )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return latest


@contextmanager
def immediate_transaction(
    db: sqlite3.Connection, lock: AbstractContextManager[Any]
) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (`BEGIN IMMEDIATE`: a second writer waits here, not at
    its first write), under the caller's lock for its one connection; rolled back on any exception."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


class SqliteDatabase:
    """One file, one connection shared by the store's threads behind a lock; a write transaction is
    `BEGIN IMMEDIATE` (a second writer, in this process or another, waits at its start). SQLite is one
    machine's: one controller process per file (`controller.service.lock_database`), so the fence, when
    installed, has nobody to fence off but is run all the same."""

    dialect = "sqlite"

    def __init__(self, path: Path | str, *, busy_timeout_ms: int | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._fence: Fence | None = None
        try:
            self._db = connect(self.path, check_same_thread=False)
            if busy_timeout_ms is not None:
                self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.path}: {exc}") from exc

    @contextmanager
    def transaction(self, *, fenced: bool = True) -> Iterator[sqlite3.Connection]:
        try:
            with immediate_transaction(self._db, self._lock) as db:
                if fenced and self._fence is not None:
                    self._fence(db)
                yield db
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.path}: {exc}") from exc

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return list(self._db.execute(sql, tuple(args)).fetchall())
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.path}: {exc}") from exc

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        with self._lock:
            return migrate(self._db, component, migrations)

    def now(self) -> float:
        return time.time()

    def install_fence(self, fence: Fence | None) -> None:
        self._fence = fence

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        """Checkpoints the WAL into the database file first: after a clean stop `<db>` alone holds
        everything (a plain file copy is a complete backup), and `<db>-wal` is empty."""
        with self._lock:
            # Another process reading right now blocks it: SQLite then checkpoints at the last close.
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
