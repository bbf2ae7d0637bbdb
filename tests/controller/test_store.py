import time

import pytest

from canaryflow.adapters.database import open_database
from canaryflow.kernel.rollout import RolloutState, Started, StepStarted, apply
from controller.rollout.records import RolloutRecord, StepRecord
from controller.rollout.store import RolloutStore, StaleState
from tests.support.counting_database import CountingDatabase


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """The same tests on both backends: a SQLite file, and a database on a real PostgreSQL server."""
    return tmp_path / "c.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def record(rid="m-v2-1", model="m"):
    now = time.time()
    return RolloutRecord(
        id=rid, model=model, baseline_version="1", canary_version="2", created_at=now, updated_at=now
    )


def test_create_is_idempotent_and_marks_the_inbox(location):
    store = RolloutStore(location)
    assert store.accept_delivery("mlflow", "d1", "registry", {"x": 1})
    assert not store.accept_delivery("mlflow", "d1", "registry", {"x": 2})
    item = store.pending_inbox()[0]
    assert store.create_rollout(record(), inbox_id=item.id)
    assert not store.create_rollout(record(), inbox_id=item.id)
    assert store.pending_inbox() == []
    assert store.inbox()[0].outcome == "rollout m-v2-1"


def test_transitions_are_checked_against_the_stored_state(location):
    store = RolloutStore(location)
    store.create_rollout(record())
    t1 = apply(RolloutState(), Started(workflow="wf"))
    store.transition("m-v2-1", t1, workflow="wf")
    with pytest.raises(StaleState):
        store.transition("m-v2-1", t1)  # already applied: the rollout is no longer pending
    t2 = apply(t1.after, StepStarted(index=0, weight=5))
    got = store.transition("m-v2-1", t2, weight=5)
    assert (got.phase, got.step_index, got.weight, got.workflow) == ("canary", 0, 5, "wf")


def test_everything_survives_reopening(location):
    store = RolloutStore(location)
    store.create_rollout(record())
    store.transition("m-v2-1", apply(RolloutState(), Started(workflow="wf")), workflow="wf")
    assert store.upsert_step("m-v2-1", StepRecord(index=0, weight=5, commit_sha="abc", status="running"))
    assert not store.upsert_step("m-v2-1", StepRecord(index=0, weight=5, commit_sha="abc", status="running"))
    assert store.upsert_step(
        "m-v2-1",
        StepRecord(
            index=0, weight=5, commit_sha="abc", status="pass", verdict={"decision": "promote", "checks": []}
        ),
    )
    assert store.add_commit("m-v2-1", "abc", "step 0 at 5%")
    assert not store.add_commit("m-v2-1", "abc", "step 0 at 5%")
    store.close()
    again = RolloutStore(location)
    detail = again.detail("m-v2-1")
    assert detail is not None and detail.phase == "canary" and detail.workflow == "wf"
    assert detail.steps[0].verdict == {"decision": "promote", "checks": []}
    assert [c.sha for c in detail.commits] == ["abc"]
    assert [t.to_phase for t in detail.transitions] == ["pending", "canary"]
    assert again.rollouts(active_only=True, model="m")[0].id == "m-v2-1"
    assert again.counts_by_phase() == {"canary": 1}


def test_a_step_or_commit_already_stored_takes_no_write_transaction(location):
    """The mirror repeats every step and commit at every reconcile: what is stored already is found
    by a read, without taking the write lock (which the reconcile threads would wait on)."""
    db = CountingDatabase(open_database(location))
    store = RolloutStore(db)
    store.create_rollout(record())
    step = StepRecord(index=0, weight=5, commit_sha="abc", status="running", verdict={"decision": "wait"})
    assert store.upsert_step("m-v2-1", step) and store.add_commit("m-v2-1", "abc", "step 0 at 5%")
    db.reset()
    assert not store.upsert_step("m-v2-1", step)
    assert not store.add_commit("m-v2-1", "abc", "step 0 at 5%")
    assert db.writes == 0 and len(db.reads) == 2
    assert store.upsert_step("m-v2-1", step.model_copy(update={"status": "pass"}))
    assert db.writes == 1
    assert store.detail("m-v2-1").steps[0].status == "pass"
    assert [c.sha for c in store.commits_of("m-v2-1")] == ["abc"]
    store.close()
