"""Where canaryflow's stores keep their state: one `Database` interface (base.py), one file per backend.

SQLite is the embedded default (a file path); PostgreSQL (`postgresql://` URL) is the state several
controller replicas share. `open_database` picks the backend by the location's scheme.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from canaryflow.adapters.database.base import (
    Connection,
    Database,
    DatabaseError,
    Deposed,
    Fence,
    Migration,
    SchemaError,
)
from canaryflow.adapters.database.postgres import PostgresDatabase
from canaryflow.adapters.database.sqlite import SqliteDatabase

# URL scheme -> backend, built from the whole URL (a plain path is SQLite's).
DATABASES: dict[str, Callable[[str], Database]] = {
    "sqlite": lambda url: SqliteDatabase(url.removeprefix("sqlite://")),
    "postgresql": PostgresDatabase,
}
_ALIASES = {"postgres": "postgresql"}


def open_database(location: str | Path) -> Database:
    """The database at `location`: `postgresql://user:pw@host/db`, `sqlite:///path/file.db` or a path."""
    text = str(location)
    scheme = text.split("://", 1)[0].lower() if "://" in text else "sqlite"
    scheme = _ALIASES.get(scheme, scheme)
    if scheme not in DATABASES:
        known = ", ".join(sorted(DATABASES))
        raise ValueError(f"database_url: unknown scheme {scheme!r} (one of: {known})")
    return DATABASES[scheme](text if "://" in text else f"sqlite://{text}")


def as_database(location: Database | str | Path) -> Database:
    """A store's constructor argument: a database already open (shared by the stores), or a location."""
    return open_database(location) if isinstance(location, str | Path) else location


__all__ = [
    "DATABASES",
    "Connection",
    "Database",
    "DatabaseError",
    "Deposed",
    "Fence",
    "Migration",
    "PostgresDatabase",
    "SchemaError",
    "SqliteDatabase",
    "as_database",
    "open_database",
]
