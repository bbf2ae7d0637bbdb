"""A real `Database` (SQLite or PostgreSQL) that counts what the stores ask of it: reads (`query`) and
write transactions (`transaction`). For tests that pin how much a store does per reconcile: a read
that comes back twice, or a write of a row that did not change, shows in the counts."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from canaryflow.adapters.database import Connection, Database, Fence, Migration


class CountingDatabase:
    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.reads: list[str] = []
        self.writes = 0

    def reset(self) -> None:
        self.reads, self.writes = [], 0

    def transaction(self, *, fenced: bool = True) -> AbstractContextManager[Connection]:
        self.writes += 1
        return self.inner.transaction(fenced=fenced)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        self.reads.append(sql)
        return self.inner.query(sql, args)

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        return self.inner.migrate(component, migrations)

    def now(self) -> float:
        return self.inner.now()

    def install_fence(self, fence: Fence | None) -> None:
        self.inner.install_fence(fence)

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()
