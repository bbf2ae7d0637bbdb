"""Leadership on a shared PostgreSQL database (controller/leadership.py): one leader at a time, a
follower takes over once the lease expired, and the fence refuses every write and push of a deposed
leader, however long it keeps believing it leads."""

from __future__ import annotations

import threading
import time

import pytest

from canaryflow.adapters.database import Deposed, open_database
from controller.leadership import DatabaseLease, FencedGitOps
from controller.rollout.store import RolloutStore


def _replica(url: str, name: str, ttl_s: float = 1.0) -> tuple[DatabaseLease, RolloutStore]:
    store = RolloutStore(open_database(url))
    return DatabaseLease(store.db, identity=name, ttl_s=ttl_s, renew_s=ttl_s / 4), store


def _write(store: RolloutStore, n: int) -> None:
    from controller.rollout.records import RolloutRecord

    now = time.time()
    store.create_rollout(RolloutRecord(id=f"r{n}", model="m", baseline_version="1", canary_version=str(n),
                                       created_at=now, updated_at=now))  # fmt: skip


def test_one_leader_and_only_its_writes_land(postgres_url):
    a, store_a = _replica(postgres_url, "a")
    b, store_b = _replica(postgres_url, "b")
    assert a.attempt() and not b.attempt()
    assert a.epoch() == 1 and b.epoch() is None
    _write(store_a, 1)
    with pytest.raises(Deposed):
        _write(store_b, 2)
    assert store_b.accept_delivery("mlflow", "d1", "registry", {})  # deliveries: any replica
    assert [r.id for r in store_a.rollouts()] == ["r1"]


def test_a_follower_takes_over_an_expired_lease_and_the_old_leader_is_fenced_off(postgres_url):
    a, store_a = _replica(postgres_url, "a")
    b, store_b = _replica(postgres_url, "b")
    assert a.attempt()
    time.sleep(1.2)  # a stalls (a GC pause, a partition): no renewal past the ttl
    assert b.attempt() and b.epoch() == 2
    a._valid_until = time.monotonic() + 60  # a still believes it leads
    with pytest.raises(Deposed, match="deposed"):
        _write(store_a, 1)
    with pytest.raises(Deposed):
        FencedGitOps(_Repo(), a.fenced).commit_step(None, 5, "promote")
    _write(store_b, 2)
    assert not a.attempt() and [r.id for r in store_b.rollouts()] == ["r2"]


def test_a_takeover_waits_for_the_old_leaders_push_in_flight(postgres_url):
    a, _ = _replica(postgres_url, "a")
    b, _ = _replica(postgres_url, "b")
    assert a.attempt()
    repo = _Repo(hold=threading.Event())
    push = threading.Thread(target=FencedGitOps(repo, a.fenced).commit_step, args=(None, 5, "promote"))
    push.start()
    assert repo.entered.wait(5)
    time.sleep(1.2)  # the lease expires while the push is still running
    took_over = threading.Event()
    threading.Thread(target=lambda: b.attempt() and took_over.set(), daemon=True).start()
    assert not took_over.wait(1.0), "the new leader must not lead while the old one's push runs"
    repo.hold.set()
    push.join(5)
    assert took_over.wait(10) and b.epoch() == 2 and repo.pushes == 1


def test_a_clean_stop_hands_the_lease_on_at_once(postgres_url):
    a, _ = _replica(postgres_url, "a", ttl_s=30.0)
    b, _ = _replica(postgres_url, "b", ttl_s=30.0)
    assert a.attempt() and not b.attempt()
    a.release()
    assert b.attempt() and not a.leads()


class _Repo:
    """A GitOps repo whose push can be held open (what a slow remote does)."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.hold, self.entered, self.pushes = hold, threading.Event(), 0

    def commit_step(self, spec, weight, decision, reason=""):
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(10)
        self.pushes += 1

    def rollback(self, spec, reason):
        self.pushes += 1


def test_serve_refuses_an_unreachable_database_and_a_renewal_slower_than_the_lease(tmp_path):
    """`controller serve`: exit 2 with the setting named (and no password shown), nothing started."""
    from typer.testing import CliRunner

    from canaryflow.app.cli import app

    base = {"CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET": "s", "CANARYFLOW_WORKFLOWS_ENGINE": "local"}
    argv = ["controller", "serve", "--db", str(tmp_path / "c.db"), "--port", "0"]
    bad = {**base, "CANARYFLOW_CONTROLLER_DATABASE_URL": "postgresql://cf:hunter2@127.0.0.1:1/x"}
    result = CliRunner().invoke(app, argv, env=bad)
    assert result.exit_code == 2 and "127.0.0.1:1" in result.output and "hunter2" not in result.output
    slow = {**base, "CANARYFLOW_CONTROLLER_LEADER_TTL_S": "5", "CANARYFLOW_CONTROLLER_LEADER_RENEW_S": "5"}
    result = CliRunner().invoke(app, argv, env=slow)
    assert result.exit_code == 2 and "leader_renew_s" in result.output
