"""SQLite for canaryflow's stores: one way to open a database, and versioned schemas with migrations.

The controller's rollout store and the local workflow runner keep their tables in one file, each as a
*component* with its own schema version in `cf_schema`. Opening a store applies the migrations it has
not seen, in one transaction per component, so an upgrade either completes or leaves the file as it
was; a file written by a newer canaryflow is refused with a message instead of being misread.
Migration 1 of each component is written with `IF NOT EXISTS`, so a file made before schemas were
versioned is adopted as it is.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS cf_schema (
    component TEXT PRIMARY KEY, version INTEGER NOT NULL, applied_at REAL NOT NULL)
"""


class SchemaError(RuntimeError):
    """The database cannot be used by this version of canaryflow (the message says why and what to do)."""


@dataclass(frozen=True)
class Migration:
    """One step of a component's schema: `version` follows the previous one by exactly 1."""

    version: int
    sql: str  # statements separated by ';' (no ';' inside a statement)

    def statements(self) -> list[str]:
        return [s.strip() for s in self.sql.split(";") if s.strip()]


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
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError(f"{component}: migrations must be numbered 1..n in order, got {versions}")
    latest = len(migrations)
    db.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(db, component)
        if current > latest:
            raise SchemaError(
                f"{component} schema version {current} in this database is newer than this canaryflow "
                f"knows ({latest}): upgrade canaryflow, or restore a backup taken before the upgrade"
            )
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
