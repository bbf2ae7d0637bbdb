import pytest

from canaryflow.kernel.rollout import (
    ApprovalRequested,
    Approved,
    IllegalTransition,
    Promoted,
    PromoteStarted,
    Rejected,
    Retried,
    RollbackStarted,
    RolledBack,
    RolloutState,
    Started,
    StepStarted,
    Supersede,
    TimedOut,
    WorkflowFailed,
    apply,
)


def run(events, state=None):
    state = state or RolloutState()
    reasons = []
    for ev in events:
        t = apply(state, ev)
        reasons.append(t.reason)
        state = t.after
    return state, reasons


def test_happy_path_with_approval():
    state, reasons = run(
        [
            Started(workflow="wf"),
            StepStarted(index=0, weight=5),
            StepStarted(index=1, weight=25),
            ApprovalRequested(url="https://gh/pr/1"),
            Approved(by="alice"),
            PromoteStarted(),
            Promoted(),
        ]
    )
    assert state.phase == "promoted" and state.step_index == 1
    assert reasons[4] == "approved by alice"


def test_rollback_and_reasons():
    state, reasons = run(
        [
            Started(workflow="wf"),
            StepStarted(index=0, weight=5),
            RollbackStarted(cause="p99 latency +40%"),
            RolledBack(),
        ]
    )
    assert state.phase == "rolled_back"
    assert "p99 latency" in reasons[2]


def test_rejection_rolls_back():
    state, _ = run([Started(workflow="w"), StepStarted(index=0, weight=5), ApprovalRequested(), Rejected()])
    assert state.phase == "rolling_back"


def test_supersede_pending_ends_at_once_started_rolls_back_first():
    assert apply(RolloutState(), Supersede(by_rollout="b")).after.phase == "superseded"
    state, _ = run([Started(workflow="w"), StepStarted(index=0, weight=5), Supersede(by_rollout="b")])
    assert state.phase == "superseding"
    state, _ = run([RollbackStarted(cause="superseded"), RolledBack()], state)
    assert state.phase == "superseded"


def test_timeout_and_failure():
    state, _ = run([Started(workflow="w"), TimedOut(after_s=3600)])
    assert state.phase == "rolling_back"
    state, reasons = run([Started(workflow="w"), WorkflowFailed(message="pod OOM")])
    assert state.phase == "failed" and "pod OOM" in reasons[1]


@pytest.mark.parametrize(
    "events",
    [
        [Promoted()],  # pending cannot be promoted
        [Started(workflow="w"), Promoted()],  # promotion must start first
        [Started(workflow="w"), StepStarted(index=1, weight=25), StepStarted(index=0, weight=5)],  # backwards
        [Started(workflow="w"), Approved()],  # nothing awaits approval
        [Started(workflow="w"), RollbackStarted(cause="x"), RolledBack(), Started(workflow="w")],  # terminal
    ],
)
def test_illegal_transitions_are_refused(events):
    with pytest.raises(IllegalTransition):
        run(events)


def test_a_failed_step_retried_goes_back_to_the_canary_at_that_step_and_only_from_an_end_that_allows_it():
    state, reasons = run(
        [
            Started(workflow="wf"),
            StepStarted(index=0, weight=5),
            StepStarted(index=1, weight=50),
            RollbackStarted(cause="p99 latency +40%"),
            RolledBack(),
            Retried(index=1, weight=50, by="alice", why="noisy neighbour gone"),
            StepStarted(index=2, weight=100),
        ]
    )
    assert (state.phase, state.step_index) == ("canary", 2)
    assert reasons[5] == "step 1 retried by alice: noisy neighbour gone: canary at 50% again"
    for phase in ("canary", "promoted", "superseded", "pending"):
        with pytest.raises(IllegalTransition):
            apply(RolloutState(phase=phase), Retried(index=0, weight=5))
    failed = apply(RolloutState(phase="failed", step_index=0), Retried(index=0, weight=5, by="bob"))
    assert (failed.after.phase, failed.after.step_index) == ("canary", 0)
