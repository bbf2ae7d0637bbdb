"""Which controller replica leads, and the fence that keeps a deposed leader from writing.

Several replicas may share one PostgreSQL database: any of them accepts webhook deliveries and
people's requests (stored, deduplicated in the database), one of them - the leader - reconciles. Two
things make that safe when a leader dies, stalls or is cut off:

- **A lease** says who should lead. `DatabaseLease` is a row (`cf_lease`: holder, expiry in the
  database's clock) that the leader renews every `renew_s`; a follower takes it once it expired
  (`ttl_s` after the last renewal). In a cluster, `controller/k8s_lease.py` holds a
  `coordination.k8s.io/v1` Lease instead and uses the same fence.
- **The fence** says who may write. `cf_fence` holds the leader's identity and an epoch that grows by
  one at every change of leader. Every fenced write transaction (canaryflow/adapters/database/base.py)
  first reads that row `FOR SHARE` and goes on only if it still names this process and its epoch; a
  GitOps push runs inside such a transaction (`FencedGitOps`). A new leader bumps the epoch with an
  `UPDATE` of the same row, which waits for every write and push of the old leader still in flight
  and is seen by every one started after: a deposed leader's write is refused (`Deposed`, rolled
  back), never interleaved with the new leader's. A SIGKILLed leader's session ends at once, with its
  locks; a partitioned one's within the session timeouts (postgres.py).

The lease lives in its own row so that its renewals never wait on the fence's shared locks. On SQLite
there is one controller per file (`controller.service.lock_database`): `Solo` always leads and
installs no fence.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge

from canaryflow.adapters.database import Connection, Database, Deposed, Migration
from canaryflow.kernel.ports import GitOpsRepo
from canaryflow.kernel.types import CommitResult, Decision, RolloutSpec
from controller.observability import event

DB_NOW = "extract(epoch from clock_timestamp())"
MIGRATIONS = (
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS cf_lease (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL, acquired_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cf_fence (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch INTEGER NOT NULL, at REAL NOT NULL)
""",
    ),
)


def replica_identity() -> str:
    """Unique per process (a restarted replica is a new holder): host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Leadership(Protocol):
    identity: str

    def leads(self) -> bool:
        """True while this process holds the lease (checked again by the fence at every write)."""
        ...

    def epoch(self) -> int | None: ...

    def owns(self, model: str | None) -> bool:
        """Whether this replica reconciles `model` (None: the inbox and the drift monitor)."""
        ...

    def scope(self, model: str | None) -> AbstractContextManager[None]:
        """The block of a model's writes (with shards: fenced by the model's shard)."""
        ...

    def run(self, stop: threading.Event) -> None:
        """Acquires and renews until `stop` (its own thread); gives the lease up on the way out."""
        ...

    def fenced(self) -> AbstractContextManager[None]:
        """A block (a git push) no other leader can overlap: refused with `Deposed` when not leading."""
        ...


class Solo:
    """One controller per SQLite file: it always leads; nothing to fence."""

    identity = "solo"

    def leads(self) -> bool:
        return True

    def epoch(self) -> int | None:
        return 0

    def owns(self, model: str | None) -> bool:
        return True

    def scope(self, model: str | None) -> nullcontext[None]:
        return nullcontext()

    def run(self, stop: threading.Event) -> None:
        stop.wait()

    def fenced(self) -> nullcontext[None]:
        return nullcontext()


class Fence:
    """The `cf_fence` row: claimed by a new leader (epoch + 1), checked by every fenced transaction."""

    def __init__(self, db: Database, name: str, identity: str) -> None:
        if db.dialect != "postgresql":
            raise ValueError(f"leadership needs a database replicas share (PostgreSQL), not {db.dialect}")
        self.db, self.name, self.identity = db, name, identity
        self.held_epoch: int | None = None
        db.migrate("leadership", MIGRATIONS)
        with db.transaction(fenced=False) as conn:
            conn.execute(
                f"INSERT INTO cf_fence (name, holder, epoch, at) VALUES (?, '', 0, {DB_NOW}) "
                "ON CONFLICT DO NOTHING",
                (name,),
            )

    def claim(self, conn: Connection) -> int:
        """Makes this process the writer (in the caller's transaction): waits for the old leader's
        fenced transactions in flight, then every later one of theirs is refused."""
        row = conn.execute(
            f"UPDATE cf_fence SET holder = ?, epoch = epoch + 1, at = {DB_NOW} WHERE name = ? "
            "RETURNING epoch",
            (self.identity, self.name),
        ).fetchone()
        return int(row[0])

    def check(self, conn: Connection) -> None:
        """Installed as the database's fence: the first statement of every fenced transaction."""
        epoch = self.held_epoch
        if epoch is None:
            raise Deposed(f"{self.identity} does not lead: write refused")
        row = conn.execute(
            "SELECT epoch FROM cf_fence WHERE name = ? AND holder = ? AND epoch = ? FOR SHARE",
            (self.name, self.identity, epoch),
        ).fetchone()
        if row is None:
            self.held_epoch = None
            raise Deposed(f"{self.identity} was deposed (epoch {epoch} is over): write refused")

    def current(self) -> tuple[str, int]:
        row = self.db.query("SELECT holder, epoch FROM cf_fence WHERE name = ?", (self.name,))[0]
        return str(row[0]), int(row[1])


class LeaseElector:
    """What every lease shares: the fence, how long this process may believe it leads, the renew loop
    and its events. A backend says how one acquire-or-renew goes (`_acquire`) and how to let go."""

    def __init__(
        self,
        db: Database,
        *,
        name: str,
        identity: str | None,
        ttl_s: float,
        renew_s: float,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not 0 < renew_s < ttl_s:
            raise ValueError(
                f"leader_renew_s: must be above 0 and below leader_ttl_s ({ttl_s}), got {renew_s}"
            )
        self.identity = identity or replica_identity()
        self.db, self.name, self.ttl_s, self.renew_s = db, name, ttl_s, renew_s
        self.fence = Fence(db, name, self.identity)
        self.on_change = on_change
        self.clock: Callable[[], float] = time.monotonic
        self._valid_until = 0.0  # by `clock`: the lease surely still ours before this
        db.install_fence(self.fence.check)

    def _acquire(self) -> tuple[float, int | None] | None:
        """One acquire-or-renew: None when another holds the lease, else (the monotonic time the lease
        counts from, the epoch claimed when this acquired it anew, None when it renewed)."""
        raise NotImplementedError

    def _let_go(self) -> None:
        """Hands the lease on (a clean stop)."""

    def leads(self) -> bool:
        return self.fence.held_epoch is not None and self.clock() < self._valid_until

    def epoch(self) -> int | None:
        return self.fence.held_epoch if self.leads() else None

    def owns(self, model: str | None) -> bool:
        return self.leads()

    def scope(self, model: str | None) -> nullcontext[None]:
        return nullcontext()

    @contextmanager
    def fenced(self) -> Iterator[None]:
        with self.db.transaction():  # the fence row held FOR SHARE until the block ends
            yield

    def _claim_fence(self) -> int:
        with self.db.transaction(fenced=False) as conn:
            return self.fence.claim(conn)

    def attempt(self) -> bool:
        """One acquire-or-renew; True when this process leads after it."""
        was = self.leads()
        got = self._acquire()
        epoch: int | None = None
        if got is not None:
            counted_from, claimed = got
            epoch = claimed if claimed is not None else self.fence.held_epoch
            if claimed is None and epoch is not None and self.fence.current() != (self.identity, epoch):
                epoch = None  # renewed a lease whose fence another replica claimed since
        self.fence.held_epoch = epoch
        # Ours until ttl after `counted_from` by the lease's clock; one renew interval of margin covers
        # the drift between that clock and this process's over that time.
        self._valid_until = counted_from + self.ttl_s - self.renew_s if epoch is not None else 0.0
        now = self.leads()
        if now != was:
            holder, fence_epoch = self.fence.current()
            event(
                "leadership acquired" if now else "leadership lost",
                logging.INFO if now else logging.WARNING,
                identity=self.identity,
                epoch=fence_epoch,
                holder=holder,
            )
            if self.on_change is not None:
                self.on_change(now)
        return now

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.attempt()
            except Exception as exc:  # the database or the API away: leadership lapses on its own clock
                event("lease not renewed", logging.WARNING, identity=self.identity, error=str(exc)[:300])
                if not self.leads() and self.fence.held_epoch is not None:
                    self.fence.held_epoch = None
                    if self.on_change is not None:
                        self.on_change(False)
            stop.wait(self.renew_s)
        self.release()

    def release(self) -> None:
        """A clean stop hands the lease on at once (the next replica need not wait for its expiry)."""
        was = self.fence.held_epoch is not None
        self.fence.held_epoch = None
        self._valid_until = 0.0
        try:
            self._let_go()
        except Exception:  # best effort: otherwise the lease expires
            return
        if was:
            event("leadership released", identity=self.identity)


class DatabaseLease(LeaseElector):
    """Leadership by a lease row in the shared database (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        *,
        name: str = "controller",
        identity: str | None = None,
        ttl_s: float = 15.0,
        renew_s: float = 3.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__(db, name=name, identity=identity, ttl_s=ttl_s, renew_s=renew_s, on_change=on_change)
        with db.transaction(fenced=False) as conn:
            conn.execute(
                "INSERT INTO cf_lease (name, holder, expires_at, acquired_at) VALUES (?, '', 0, 0) "
                "ON CONFLICT DO NOTHING",
                (name,),
            )

    def _acquire(self) -> tuple[float, int | None] | None:
        started = time.monotonic()
        with self.db.transaction(fenced=False) as conn:
            row = conn.execute(
                f"UPDATE cf_lease SET expires_at = {DB_NOW} + ?, "
                f"acquired_at = CASE WHEN holder = ? THEN acquired_at ELSE {DB_NOW} END, holder = ? "
                f"WHERE name = ? AND (holder = ? OR expires_at < {DB_NOW}) RETURNING acquired_at",
                (self.ttl_s, self.identity, self.identity, self.name, self.identity),
            ).fetchone()
            if row is None:
                return None
            if self.fence.held_epoch is not None:
                return started, None  # a renewal (a fence lost since is found by `attempt`)
            claimed = self.fence.claim(conn)  # may wait for the old leader's push in flight
            started = time.monotonic()  # so the lease counts from now, not from before the wait
            conn.execute(
                f"UPDATE cf_lease SET expires_at = {DB_NOW} + ? WHERE name = ?", (self.ttl_s, self.name)
            )
        return started, claimed

    def _let_go(self) -> None:
        with self.db.transaction(fenced=False) as conn:
            conn.execute(
                "UPDATE cf_lease SET expires_at = 0 WHERE name = ? AND holder = ?", (self.name, self.identity)
            )


class FencedGitOps:
    """Every GitOps commit and push inside a fenced block: a deposed leader's push is refused before it
    starts, and a new leader's takeover waits until a push in flight has ended."""

    def __init__(self, repo: GitOpsRepo, fenced: Callable[[], AbstractContextManager[None]]) -> None:
        self._repo, self._fenced = repo, fenced

    def commit_step(
        self, spec: RolloutSpec, weight: int, decision: Decision | str, reason: str = ""
    ) -> CommitResult:
        with self._fenced():
            return self._repo.commit_step(spec, weight, decision, reason)

    def rollback(self, spec: RolloutSpec, reason: str) -> CommitResult:
        with self._fenced():
            return self._repo.rollback(spec, reason)


def export_leadership(registry: CollectorRegistry, leadership: Leadership) -> None:
    """`canaryflow_controller_leader` (1 on the replica that leads, 0 on a follower) and the epoch."""
    Gauge("canaryflow_controller_leader", "1 while this replica leads", registry=registry).set_function(
        lambda: 1.0 if leadership.leads() else 0.0
    )
    Gauge(
        "canaryflow_controller_leader_epoch",
        "the fence epoch this replica leads under (-1: none)",
        registry=registry,
    ).set_function(lambda: float(e) if (e := leadership.epoch()) is not None else -1.0)
