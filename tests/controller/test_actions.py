"""People's actions on rollouts, applied through the reconcile loop's machinery on the real local runner."""

from __future__ import annotations

import pytest

from controller import actions as actions_module
from controller.actions import ActionRefused, ActionRequest, RolloutActions
from controller.rollout.actions import ActionStore
from tests.controller.harness import HEAD_SHA, Steps, add_rollout, make, policy


def setup(tmp_path, steps: Steps, pol):
    reconciler, store, runner, clock = make(tmp_path, steps, pol)
    acts = RolloutActions(store, ActionStore(store.path), reconciler, runner, clock)
    reconciler.actions = acts
    return reconciler, store, runner, acts


def ticks(reconciler, n: int = 3) -> None:
    for _ in range(n):
        reconciler.tick()


def test_abort_rolls_back_with_the_person_in_the_reason_and_repeats_change_nothing(tmp_path):
    steps = Steps(answers={"analyze-5": ["collecting samples"]})
    reconciler, store, _, acts = setup(tmp_path, steps, policy(5, 50))
    rid = add_rollout(store)
    ticks(reconciler)
    assert store.get(rid).phase == "canary"

    with pytest.raises(ActionRefused) as missing:
        acts.request(rid, ActionRequest("abort", "alice", ""))
    assert missing.value.status == 422 and "reason" in missing.value.message

    first, created = acts.request(rid, ActionRequest("abort", "alice", "p99 looks wrong", "act-00000001"))
    assert created and first.state == "applied"
    assert store.get(rid).phase == "rolling_back"
    again, created_again = acts.request(
        rid, ActionRequest("abort", "alice", "p99 looks wrong", "act-00000001")
    )
    assert not created_again and again == first

    with pytest.raises(ActionRefused) as refused:  # a new abort of a rollout already rolling back
        acts.request(rid, ActionRequest("abort", "bob", "me too"))
    assert refused.value.status == 409 and "rolling_back" in refused.value.message

    ticks(reconciler)
    detail = store.detail(rid)
    assert detail.phase == "rolled_back"
    assert any("aborted by alice: p99 looks wrong" in t.reason for t in detail.transitions)
    # The exit handler's rollback step is told why, and by whom: its commit's Reason trailer.
    assert "aborted by alice: p99 looks wrong" in steps.inputs["rollback"].reason
    assert steps.calls.count("rollback") == 1
    assert [a.kind for a in acts.actions.of_rollout(rid)] == ["abort"]


def test_approve_is_bound_to_the_requested_commit_and_releases_the_gate(tmp_path):
    reconciler, store, _, acts = setup(tmp_path, Steps(), policy(5, approval=True))
    rid = add_rollout(store)
    with pytest.raises(ActionRefused) as early:
        acts.request(rid, ActionRequest("approve", "alice"))
    assert early.value.status == 409 and "pending" in early.value.message
    ticks(reconciler)
    assert store.get(rid).phase == "awaiting_approval"

    with pytest.raises(ActionRefused) as stale:
        acts.request(rid, ActionRequest("approve", "alice", head_sha="a" * 40))
    assert stale.value.status == 409 and HEAD_SHA in stale.value.message

    action, _ = acts.request(rid, ActionRequest("approve", "alice", "looks good", head_sha=HEAD_SHA))
    assert action.state == "applied" and store.get(rid).phase == "promoting"
    ticks(reconciler)
    detail = store.detail(rid)
    assert detail.phase == "promoted"
    assert any(t.reason == "approved by alice" for t in detail.transitions)


def test_reject_rolls_back(tmp_path):
    steps = Steps()
    reconciler, store, _, acts = setup(tmp_path, steps, policy(5, approval=True))
    rid = add_rollout(store)
    ticks(reconciler)
    acts.request(rid, ActionRequest("reject", "carol", "not this week", head_sha=HEAD_SHA))
    ticks(reconciler)
    assert store.get(rid).phase == "rolled_back"
    assert "approval rejected by carol: not this week" in steps.inputs["rollback"].reason
    assert "promote" not in steps.calls


def test_pause_holds_the_rollout_until_resumed(tmp_path):
    steps = Steps(answers={"analyze-5": ["collecting"] * 4 + ["ok"]})
    reconciler, store, _, acts = setup(tmp_path, steps, policy(5, 50))
    rid = add_rollout(store)
    ticks(reconciler, 2)
    assert store.get(rid).phase == "canary"
    acts.request(rid, ActionRequest("pause", "alice", "waiting for the on-call"))
    with pytest.raises(ActionRefused) as twice:
        acts.request(rid, ActionRequest("pause", "alice"))
    assert twice.value.status == 409 and "paused already" in twice.value.message
    calls = len(steps.calls)
    ticks(reconciler, 3)
    assert len(steps.calls) == calls, "a paused rollout must not move"
    assert store.get(rid).waiting_reason == "paused by alice: waiting for the on-call"

    acts.request(rid, ActionRequest("resume", "alice"))
    ticks(reconciler, 6)
    assert store.get(rid).phase == "promoted"


def test_promote_now_skips_the_remaining_analysis(tmp_path):
    steps = Steps(answers={"analyze-5": ["collecting samples"]})
    reconciler, store, runner, acts = setup(tmp_path, steps, policy(5, 50))
    rid = add_rollout(store)
    ticks(reconciler)
    action, _ = acts.request(rid, ActionRequest("promote", "alice", "hotfix, the analysis cannot finish"))
    assert action.state == "applied" and "analyze-5" in action.outcome and "analyze-50" in action.outcome
    ticks(reconciler)
    assert store.get(rid).phase == "promoted"
    assert "set-weight-50" not in steps.calls and "promote" in steps.calls
    node = {n.id: n for n in runner.status(store.get(rid).workflow).nodes}["analyze-50"]
    assert node.message == "skipped: promote by alice: hotfix, the analysis cannot finish"


def test_retry_runs_the_failed_step_again_in_the_same_workflow_from_its_commit(tmp_path):
    steps = Steps(answers={"analyze-50": ["fail", "ok"]})
    reconciler, store, runner, acts = setup(tmp_path, steps, policy(5, 50))
    rid = add_rollout(store)
    with pytest.raises(ActionRefused):
        acts.request(rid, ActionRequest("retry", "alice"))
    ticks(reconciler, 5)
    assert store.get(rid).phase == "rolled_back" and steps.calls.count("rollback") == 1
    workflow = store.get(rid).workflow
    calls_before = list(steps.calls)

    action, _ = acts.request(rid, ActionRequest("retry", "alice", "the noisy neighbour is gone"))
    assert (action.state, action.outcome) == ("applied", "step 2 at 50% runs again, from set-weight-50")
    record = store.get(rid)
    assert (record.phase, record.step_index, record.weight, record.finished_at) == ("canary", 1, 50, None)
    assert record.workflow == workflow and store.rollouts(model="minilm") == [record]  # no new rollout
    nodes = {n.id: n for n in runner.status(workflow).nodes}
    assert nodes["set-weight-5"].phase == "Succeeded" and nodes["analyze-5"].phase == "Succeeded"
    assert nodes["set-weight-50"].message == "retried by alice: the noisy neighbour is gone"
    assert nodes["analyze-50"].phase == nodes["rollback"].phase == "Pending"

    ticks(reconciler, 5)
    detail = store.detail(rid)
    assert detail.phase == "promoted"
    rerun = steps.calls[len(calls_before) :]
    assert rerun[:3] == ["set-weight-50", "wait-ready-50", "analyze-50"] and "set-weight-5" not in rerun
    assert "rollback" not in rerun and "promote" in rerun
    retried = [t for t in detail.transitions if t.event == "retried"]
    assert [(t.from_phase, t.to_phase, t.reason) for t in retried] == [
        ("rolled_back", "canary", "step 1 retried by alice: the noisy neighbour is gone: canary at 50% again")
    ]
    assert [s.status for s in detail.steps if s.phase == "step"] == ["pass", "pass"]
    with pytest.raises(ActionRefused) as done:  # promoted now: nothing to retry
        acts.request(rid, ActionRequest("retry", "bob", "again"))
    assert done.value.status == 409 and "promoted" in done.value.message


def test_retry_of_a_rollout_that_ended_before_any_analysis_starts_it_again_as_a_new_rollout(tmp_path):
    steps = Steps(answers={"render": ["manifests refused"]})
    reconciler, store, _, acts = setup(tmp_path, steps, policy(5))
    rid = add_rollout(store)
    ticks(reconciler, 4)
    assert store.get(rid).phase in ("rolled_back", "failed") and not store.detail(rid).steps
    steps.answers["render"] = ["ok"]
    action, _ = acts.request(rid, ActionRequest("retry", "alice", "the schema is fixed"))
    new_id = action.outcome.removeprefix("new rollout ")
    fresh = store.get(new_id)
    assert fresh is not None and fresh.trigger == f"action:{action.id}" and new_id != rid
    assert (fresh.canary_version, fresh.baseline_version) == ("2", "1")
    ticks(reconciler, 5)
    assert store.get(new_id).phase == "promoted"


def test_an_action_waits_for_a_busy_model_and_the_loop_applies_it(tmp_path, monkeypatch):
    monkeypatch.setattr(actions_module, "LOCK_WAIT_S", 0.05)
    steps = Steps(answers={"analyze-5": ["collecting samples"]})
    reconciler, store, _, acts = setup(tmp_path, steps, policy(5))
    rid = add_rollout(store)
    ticks(reconciler)
    lock = reconciler.model_lock("minilm")
    with lock:
        action, created = acts.request(rid, ActionRequest("abort", "alice", "stop it"))
    assert created and action.state == "pending" and store.get(rid).phase == "canary"
    ticks(reconciler)
    assert acts.actions.get(action.id).state == "applied"
    assert store.get(rid).phase == "rolled_back"


def test_an_action_id_is_not_reused_for_another_action(tmp_path):
    reconciler, store, _, acts = setup(tmp_path, Steps(answers={"analyze-5": ["wait"]}), policy(5))
    rid = add_rollout(store)
    ticks(reconciler)
    acts.request(rid, ActionRequest("pause", "alice", "", "same-id-0001"))
    with pytest.raises(ActionRefused) as clash:
        acts.request(rid, ActionRequest("resume", "alice", "", "same-id-0001"))
    assert clash.value.status == 409 and "action_id" in clash.value.message


class PortOnly:
    """The WorkflowEngine port and nothing more, as the Argo engine offers it (no skip, no standing still)."""

    def __init__(self, runner) -> None:
        self._runner = runner

    def submit(self, spec):
        return self._runner.submit(spec)

    def status(self, name):
        return self._runner.status(name)

    def reconcile(self, name):
        return self._runner.reconcile(name)

    def resume(self, name) -> None:
        self._runner.resume(name)

    def stop(self, name, reason) -> None:
        self._runner.stop(name, reason)


def test_an_engine_that_runs_on_its_own_refuses_pause_and_promote_but_aborts(tmp_path):
    reconciler, store, runner, clock = make(tmp_path, Steps(answers={"analyze-5": ["wait"]}), policy(5))
    acts = RolloutActions(store, ActionStore(store.path), reconciler, PortOnly(runner), clock)
    reconciler.actions = acts
    rid = add_rollout(store)
    ticks(reconciler)
    for kind, words in (("pause", "cannot hold a workflow"), ("promote", "cannot skip a running analysis")):
        with pytest.raises(ActionRefused) as refused:
            acts.request(rid, ActionRequest(kind, "alice", "because"))
        assert refused.value.status == 409 and words in refused.value.message
    acts.request(rid, ActionRequest("abort", "alice", "because"))
    ticks(reconciler)
    assert store.get(rid).phase == "rolled_back"
