"""The reconcile loop driving the real local runner: every path to a decision, and the waits."""

from controller.rollout.store import RolloutStore

from .harness import Steps, add_rollout, make, policy


def ticks(reconciler, n):
    for _ in range(n):
        reconciler.tick()


def phases(store: RolloutStore, rid: str) -> list[str]:
    detail = store.detail(rid)
    assert detail is not None
    return [t.to_phase for t in detail.transitions]


def test_passing_canary_is_promoted_with_full_history(tmp_path):
    steps = Steps({"analyze-5": ["waiting for 200 samples", "ok"]})
    reconciler, store, _, _ = make(tmp_path, steps, policy(5, 50))
    rid = add_rollout(store)
    reconciler.tick()  # starts the workflow and gives it its first pass at once
    got = store.get(rid)
    assert got.phase == "canary" and got.workflow == "canaryflow-minilm-v2-a"
    assert got.step_index == 0 and got.weight == 5 and got.waiting_reason == "waiting for 200 samples"
    ticks(reconciler, 4)
    detail = store.detail(rid)
    assert detail.phase == "promoted" and detail.finished_at is not None
    assert [(s.index, s.weight, s.status, s.commit_sha) for s in detail.steps] == [
        (0, 5, "pass", "sha-set-weight-5"),
        (1, 50, "pass", "sha-set-weight-50"),
    ]
    assert detail.steps[1].verdict["decision"] == "promote"
    assert [c.sha for c in detail.commits] == ["sha-set-weight-5", "sha-set-weight-50", "sha-promote"]
    assert phases(store, rid) == ["pending", "canary", "canary", "canary", "promoting", "promoted"]


def test_failing_analysis_rolls_back_and_says_why(tmp_path):
    reconciler, store, _, _ = make(tmp_path, Steps({"analyze-50": ["fail"]}), policy(5, 50))
    rid = add_rollout(store)
    ticks(reconciler, 5)
    detail = store.detail(rid)
    assert detail.phase == "rolled_back"
    assert detail.steps[1].status == "fail" and detail.steps[1].verdict["decision"] == "rollback"
    assert any("latency_p99: canary slower" in t.reason for t in detail.transitions)
    assert "sha-rollback" in [c.sha for c in detail.commits]
    assert "sha-promote" not in [c.sha for c in detail.commits]


def test_no_metrics_waits_and_never_promotes(tmp_path):
    why = "no data: Prometheus at http://127.0.0.1:9 unreachable"
    reconciler, store, _, _ = make(tmp_path, Steps({"analyze-5": [why]}), policy(5, 50))
    rid = add_rollout(store)
    ticks(reconciler, 20)
    got = store.get(rid)
    assert got.phase == "canary" and got.step_index == 0 and got.waiting_reason == why
    assert [c.sha for c in store.commits_of(rid)] == ["sha-set-weight-5"]


def test_newer_event_supersedes_and_then_starts(tmp_path):
    reconciler, store, runner, clock = make(tmp_path, Steps({"analyze-5": ["waiting"]}), policy(5, 50))
    old = add_rollout(store, "minilm-v2-a", "2", at=clock.now)
    ticks(reconciler, 2)
    assert store.get(old).phase == "canary"
    new = add_rollout(store, "minilm-v3-b", "3", at=clock.now + 1)
    reconciler.tick()
    assert store.get(old).phase == "superseding" and store.get(old).superseded_by == new
    assert store.get(new).phase == "pending"
    ticks(reconciler, 3)
    assert store.get(old).phase == "superseded"
    assert "sha-rollback" in [c.sha for c in store.commits_of(old)]
    assert store.get(new).phase == "canary"
    assert runner.status("canaryflow-minilm-v2-a").phase == "Stopped"


def test_pending_rollout_superseded_before_it_starts(tmp_path):
    reconciler, store, _, clock = make(tmp_path, Steps(), policy(5))
    old = add_rollout(store, "minilm-v2-a", "2", at=clock.now)
    new = add_rollout(store, "minilm-v3-b", "3", at=clock.now + 1)
    reconciler.tick()
    assert store.get(old).phase == "superseded" and store.get(old).workflow is None
    assert store.get(new).phase == "promoted"  # passing steps: started and finished within one tick


def test_max_duration_rolls_back(tmp_path):
    reconciler, store, _, clock = make(
        tmp_path, Steps({"analyze-5": ["waiting"]}), policy(5, max_duration_s=60)
    )
    rid = add_rollout(store)
    ticks(reconciler, 3)
    clock.now += 61
    ticks(reconciler, 3)
    detail = store.detail(rid)
    assert detail.phase == "rolled_back"
    assert any("max duration exceeded" in t.reason for t in detail.transitions)


def test_decision_latency_observed_once(tmp_path):
    reconciler, store, _, _ = make(tmp_path, Steps(), policy(5))
    add_rollout(store)
    ticks(reconciler, 3)
    text = reconciler.metrics.exposition().decode()
    assert 'canaryflow_controller_decision_latency_seconds_count{state="promoted"} 1.0' in text


def test_a_rollback_that_fails_is_retried_until_it_lands_never_failed(tmp_path):
    """After traffic moved, a failing rollback (the git remote down) keeps the rollout rolling back,
    saying why, and retries until the rollback commit lands: never `failed` with the canary live."""
    down = "git push: the git remote is unreachable: Could not resolve host"
    steps = Steps({"analyze-5": ["fail"], "rollback": [down] * 6 + ["ok"]})
    reconciler, store, _, clock = make(tmp_path, steps, policy(5, 50))
    rid = add_rollout(store)
    for _ in range(40):
        reconciler.tick()
        clock.now += 61  # past any retry backoff
        if store.get(rid).phase != "rolling_back":
            break
        assert down in (store.get(rid).waiting_reason or "")
    detail = store.detail(rid)
    assert detail.phase == "rolled_back", [t.reason for t in detail.transitions]
    assert steps.calls.count("rollback") == 7
    assert "sha-rollback" in [c.sha for c in detail.commits]
