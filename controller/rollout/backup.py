"""A consistent copy of the controller's database while it runs: SQLite's online backup API.

The store runs in WAL mode, so recent transactions live in `<db>-wal` until a checkpoint: copying the
`.db` file alone can miss them (after a crash, even all of them). `sqlite3.Connection.backup` reads
through SQLite itself, pages from the WAL included, in steps that let the controller keep writing, and
the copy is written beside its destination and renamed into place only once it checks out, so a
failed backup never leaves a half-written file under the name asked for.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from pydantic import BaseModel


class BackupError(RuntimeError):
    """The backup could not be made; the message says which file and why, on one line."""


class BackupResult(BaseModel):
    out: str
    bytes: int
    tables: dict[str, int]


def backup_database(db: Path, out: Path, pages_per_step: int = 256) -> BackupResult:
    """Copies `db` (live or not) to `out` as one self-contained file (journal mode DELETE, no -wal)."""
    if not db.is_file():
        raise BackupError(f"db: {db} does not exist")
    if out.resolve() == db.resolve():
        raise BackupError("out: the backup must not overwrite the database itself")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        source = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            target = sqlite3.connect(partial)
            try:
                source.backup(target, pages=pages_per_step)
                target.execute("PRAGMA journal_mode=DELETE")
                check = target.execute("PRAGMA integrity_check").fetchone()[0]
                if check != "ok":
                    raise BackupError(f"out: the copy of {db} fails SQLite's integrity check ({check})")
                tables = {
                    name: target.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
                    for (name,) in target.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                    )
                }
            finally:
                target.close()
        finally:
            source.close()
        os.replace(partial, out)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup of {db} to {out} failed: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupResult(out=str(out), bytes=out.stat().st_size, tables=tables)
