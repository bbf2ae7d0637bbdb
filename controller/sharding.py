"""Models partitioned across controller replicas when one replica is not enough.

A fixed number of shards (`shards`), each a lease with its own fence (controller/leadership.py): a
model belongs to shard `hash(model) % shards` (a stable hash, the same in every replica and release),
and only the replica holding that shard's lease reconciles the model, its workflow steps and its GitOps
commits. Every replica heartbeats into `cf_members`; each aims at its fair share, `ceil(shards /
live replicas)`: it takes free or expired shards up to it and hands back what it holds beyond it, so
a new replica gets work and a dead replica's shards are taken over once their leases expire
(`leader_ttl_s` plus a renew interval: well within 60 s with the defaults).

Fencing per shard: a write belongs to the shard of the model it is done for. The reconcile job of a
model runs inside `scope(model)` (a context variable), and every fenced transaction checks that
shard's fence row; a write outside any model's scope (settling the inbox, creating rollouts) belongs
to shard 0, whose holder also runs the drift monitor. Leases, not rendezvous hashing over members,
decide ownership because a lease is what a fence can be attached to: a replica never reconciles a
model it cannot prove it owns.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from canaryflow.adapters.database import Connection, Database, Deposed, Migration
from controller.leadership import DB_NOW, DatabaseLease, replica_identity
from controller.observability import event

_current_shard: contextvars.ContextVar[int | None] = contextvars.ContextVar("canaryflow_shard", default=None)
MIGRATIONS = (
    Migration(1, "CREATE TABLE IF NOT EXISTS cf_members (identity TEXT PRIMARY KEY, seen_at REAL NOT NULL)"),
)


def shard_of(model: str | None, shards: int) -> int:
    """The shard a model belongs to (None: the inbox's, shard 0); stable across processes."""
    if model is None:
        return 0
    return int.from_bytes(hashlib.sha256(model.encode()).digest()[:8], "big") % shards


class ShardedLeadership:
    """Holds a fair share of `shards` leases; the `Leadership` of a sharded controller."""

    def __init__(
        self,
        db: Database,
        shards: int,
        *,
        name: str = "controller",
        identity: str | None = None,
        ttl_s: float = 15.0,
        renew_s: float = 3.0,
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards: must be at least 1, got {shards}")
        self.identity = identity or replica_identity()
        self.db, self.shards, self.ttl_s, self.renew_s = db, shards, ttl_s, renew_s
        db.migrate("sharding", MIGRATIONS)
        self.leases = [
            DatabaseLease(db, name=f"{name}-{i}", identity=self.identity, ttl_s=ttl_s, renew_s=renew_s)
            for i in range(shards)
        ]
        db.install_fence(self._check)  # after the leases: one fence, dispatching on the write's shard

    # -- the Leadership interface ------------------------------------------------------------------
    def leads(self) -> bool:
        """True while it holds any shard (the reconcile loop then ticks, for the models it owns)."""
        return any(lease.leads() for lease in self.leases)

    def epoch(self) -> int | None:
        return self.leases[0].epoch()

    def owns(self, model: str | None) -> bool:
        return self.leases[shard_of(model, self.shards)].leads()

    def held(self) -> list[int]:
        return [i for i, lease in enumerate(self.leases) if lease.leads()]

    @contextmanager
    def scope(self, model: str | None) -> Iterator[None]:
        """Writes in this block belong to `model`'s shard (the reconcile job of a model runs in it)."""
        token = _current_shard.set(shard_of(model, self.shards))
        try:
            yield
        finally:
            _current_shard.reset(token)

    @contextmanager
    def fenced(self) -> Iterator[None]:
        with self.db.transaction():  # the current shard's fence row held FOR SHARE until the block ends
            yield

    def _check(self, conn: Connection) -> None:
        shard = _current_shard.get()
        lease = self.leases[shard if shard is not None else 0]
        try:
            lease.fence.check(conn)
        except Deposed as exc:
            raise Deposed(f"shard {shard or 0}: {exc}") from exc

    # -- keeping a fair share ------------------------------------------------------------------------
    def live_members(self) -> int:
        rows = self.db.query(f"SELECT COUNT(*) FROM cf_members WHERE seen_at > {DB_NOW} - ?", (self.ttl_s,))
        return max(1, int(rows[0][0]))

    def heartbeat(self) -> None:
        with self.db.transaction(fenced=False) as conn:
            conn.execute(
                f"INSERT INTO cf_members (identity, seen_at) VALUES (?, {DB_NOW}) "
                f"ON CONFLICT (identity) DO UPDATE SET seen_at = excluded.seen_at",
                (self.identity,),
            )

    def balance(self) -> list[int]:
        """One round: heartbeat, renew what it holds, hand back beyond its share, take free shards up
        to it (starting at a place of its own, so replicas do not all race for shard 0); the held."""
        self.heartbeat()
        fair = math.ceil(self.shards / self.live_members())
        for lease in self.leases:
            if lease.fence.held_epoch is not None:
                lease.attempt()
        held = self.held()
        for i in held[fair:]:
            self.leases[i].release()
            event("shard handed back", shard=i, identity=self.identity, share=fair)
        start = shard_of(self.identity, self.shards)
        for offset in range(self.shards):
            if len(self.held()) >= fair:
                break
            i = (start + offset) % self.shards
            if self.leases[i].fence.held_epoch is None and self.leases[i].attempt():
                event("shard taken", shard=i, identity=self.identity, share=fair)
        return self.held()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.balance()
            except Exception as exc:  # the database away: the leases lapse on their own clock
                event("shards not renewed", logging.WARNING, identity=self.identity, error=str(exc)[:300])
            stop.wait(self.renew_s)
        for lease in self.leases:
            lease.release()
        try:
            with self.db.transaction(fenced=False) as conn:
                conn.execute("DELETE FROM cf_members WHERE identity = ?", (self.identity,))
        except Exception:  # best effort: the heartbeat ages out
            return
