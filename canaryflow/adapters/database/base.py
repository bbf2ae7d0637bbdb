"""The one interface canaryflow's stores keep their state behind: SQLite (embedded) or PostgreSQL (shared).

A store writes its SQL once, in the subset both servers speak: `?` placeholders, `INSERT ... ON
CONFLICT ... DO NOTHING / DO UPDATE ... excluded.`, `RETURNING id`, `IS NOT DISTINCT FROM`; in its
migrations `REAL` for a float and `INTEGER PRIMARY KEY AUTOINCREMENT` for a generated key. What differs
(placeholders, a float that must be 64-bit, the generated key, how a writer waits for another) is the
backend's business, in its own file (`sqlite.py`, `postgres.py`).

Fencing: several controller replicas may share one PostgreSQL database, and only the leader may move
rollouts. A store's write transactions are *fenced* by default: where a fence is installed (the
leadership's, `controller/leadership.py`), it runs first inside every such transaction and raises
`Deposed` unless this process still holds leadership, holding the lease row locked until the commit,
so a deposed leader's write never lands after another replica took over. Writes any replica may do
(accepting a webhook delivery, storing a person's request) open `transaction(fenced=False)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


class SchemaError(RuntimeError):
    """The database cannot be used by this version of canaryflow (the message says why and what to do)."""


class DatabaseError(RuntimeError):
    """The database could not do what was asked (unreachable, disk full, I/O error): the message names
    the database; the caller's operation did not happen and may be retried."""


class Deposed(RuntimeError):
    """This process no longer leads: a fenced write was refused and rolled back (nothing was written)."""


@dataclass(frozen=True)
class Migration:
    """One step of a component's schema: `version` follows the previous one by exactly 1."""

    version: int
    sql: str  # statements separated by ';' (no ';' inside a statement)

    def statements(self) -> list[str]:
        return [s.strip() for s in self.sql.split(";") if s.strip()]


def check_numbering(component: str, migrations: Sequence[Migration]) -> int:
    """The latest version; raises ValueError unless the migrations are numbered 1..n in order."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError(f"{component}: migrations must be numbered 1..n in order, got {versions}")
    return len(migrations)


def newer_schema(component: str, current: int, latest: int) -> SchemaError:
    return SchemaError(
        f"{component} schema version {current} in this database is newer than this canaryflow "
        f"knows ({latest}): upgrade canaryflow, or restore a backup taken before the upgrade"
    )


class Row(Protocol):
    """A result row, read by position (`row[0]`) or by column name (`row["id"]`, `dict(row)`)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What a transaction hands its body: statements in the portable SQL, `?` placeholders."""

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> Any: ...


Fence = Callable[[Connection], None]


class Database(Protocol):
    """A database the stores share; thread-safe; every change in `transaction()`, all or nothing."""

    dialect: str

    def transaction(self, *, fenced: bool = True) -> AbstractContextManager[Connection]:
        """One write transaction: committed when the block ends, rolled back on any exception (a driver
        error comes out as `DatabaseError`). Fenced (the default): the fence, where one is installed,
        runs first and raises `Deposed` when this process no longer leads."""
        ...

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Rows of one read (no fence: any replica may read)."""
        ...

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Applies the component's migrations not applied yet, all or none; the version now."""
        ...

    def now(self) -> float:
        """The database's clock (unix seconds): one clock for every replica's lease arithmetic."""
        ...

    def install_fence(self, fence: Fence | None) -> None:
        """Runs `fence` first in every fenced transaction from now on (None: no fence)."""
        ...

    def describe(self) -> str:
        """Where it is, for messages (a path, or a URL without its password)."""
        ...

    def close(self) -> None: ...
