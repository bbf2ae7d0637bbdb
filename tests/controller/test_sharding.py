"""Models partitioned across replicas (controller/sharding.py) on a real PostgreSQL database: each of
three replicas holds its fair share of the shard leases, every model has exactly one owner, a dead
replica's shards are taken over once their leases expire, and its writes are fenced off per shard."""

from __future__ import annotations

import time

import pytest

from canaryflow.adapters.database import Deposed, open_database
from controller.rollout.store import RolloutStore
from controller.sharding import ShardedLeadership, shard_of

MODELS = [f"model-{i}" for i in range(40)]


def _replica(url: str, name: str) -> tuple[ShardedLeadership, RolloutStore]:
    store = RolloutStore(open_database(url))
    return ShardedLeadership(store.db, 6, identity=name, ttl_s=1.0, renew_s=0.25), store


def _rounds(replicas: list[ShardedLeadership], n: int = 3) -> None:
    for _ in range(n):
        for replica in replicas:
            replica.balance()


def _owners(replicas: list[ShardedLeadership]) -> dict[str, list[str]]:
    return {m: [r.identity for r in replicas if r.owns(m)] for m in MODELS}


def test_three_replicas_share_the_models_and_take_over_a_dead_ones_share(postgres_url):
    replicas = [_replica(postgres_url, name) for name in ("a", "b", "c")]
    leaders = [r for r, _ in replicas]
    _rounds(leaders)
    assert sorted(len(r.held()) for r in leaders) == [2, 2, 2]
    assert sorted(s for r in leaders for s in r.held()) == list(range(6))
    assert all(len(owners) == 1 for owners in _owners(leaders).values())
    assert {shard_of(m, 6) for m in MODELS} == set(range(6))  # the hash spreads models over every shard

    dead, dead_store = replicas[2]
    orphaned = dead.held()
    died = time.monotonic()  # c stops renewing (SIGKILL, a partition): a and b go on
    survivors = leaders[:2]
    while not all(len(owners) == 1 for owners in _owners(survivors).values()):
        assert time.monotonic() - died < 60, "the dead replica's models were not taken over within 60 s"
        _rounds(survivors, 1)
        time.sleep(0.25)
    assert sorted(len(r.held()) for r in survivors) == [3, 3]
    orphan_model = next(m for m in MODELS if shard_of(m, 6) == orphaned[0])
    dead.leases[orphaned[0]]._valid_until = float("inf")  # c still believes it holds the shard
    with dead.scope(orphan_model), pytest.raises(Deposed, match=f"shard {orphaned[0]}"):
        dead_store.update("any", reason="late write")
    owner_store = next(s for r, s in replicas[:2] if r.owns(orphan_model))
    owner = next(r for r, s in replicas[:2] if r.owns(orphan_model))
    with owner.scope(orphan_model):
        owner_store.update("any", reason="the owner's write")


def test_a_replica_joining_gets_its_share_handed_over(postgres_url):
    a, _ = _replica(postgres_url, "a")
    _rounds([a])
    assert a.held() == list(range(6))
    b, _ = _replica(postgres_url, "b")
    _rounds([b, a], 2)  # b's heartbeat halves a's share: a hands 3 back, b takes them
    _rounds([b, a], 2)
    assert len(a.held()) == 3 and len(b.held()) == 3
    assert sorted(a.held() + b.held()) == list(range(6))


def test_only_the_owner_of_a_models_shard_moves_its_rollout(postgres_url, tmp_path):
    """Two reconcilers on the real local runner and one database: the one whose shard holds the model
    starts and drives its rollout; the other's ticks leave it alone."""
    from pydantic import SecretStr

    from controller.controller_settings import ControllerSettings
    from controller.observability import ControllerMetrics
    from controller.reconcile import Reconciler
    from tests.controller.harness import Steps, add_rollout, policy
    from workflows.local.runner import LocalRunner

    pol = policy(5)
    replicas = []
    for name in ("a", "b"):
        store = RolloutStore(open_database(postgres_url))
        lead = ShardedLeadership(store.db, 2, identity=name, ttl_s=5.0, renew_s=1.0)
        runner = LocalRunner(store.db, Steps({}), lambda _: pol)
        settings = ControllerSettings(db_path=tmp_path / f"{name}.db", mlflow_webhook_secret=SecretStr("s"))
        reconciler = Reconciler(
            settings, store, runner, None, ControllerMetrics(store), policy_loader=lambda _: pol
        )
        reconciler.leads, reconciler.owns, reconciler.scope = lead.leads, lead.owns, lead.scope
        replicas.append((lead, reconciler, store))
    _rounds([r[0] for r in replicas])
    assert sorted(len(r[0].held()) for r in replicas) == [1, 1]
    (_, owner_loop, owner_store), (_, other_loop, other_store) = sorted(
        replicas, key=lambda r: not r[0].owns("minilm")
    )
    creator = next(r for r in replicas if r[0].owns(None))
    with creator[0].scope(None):
        rid = add_rollout(creator[2])
    assert other_loop.tick() == 0 and other_store.get(rid).phase == "pending"
    assert owner_loop.tick() == 1
    assert owner_store.get(rid).phase != "pending" and owner_store.get(rid).workflow
