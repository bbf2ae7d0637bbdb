"""The local runner's mechanics: order, polling, the approval gate, stop, retries, exit handler, restart.

The step layer here is a scripted function (the real steps are exercised in test_local_rollout.py);
what is under test is how the runner drives the DAG and what it persists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from canaryflow.adapters.database import SqliteDatabase
from canaryflow.kernel.ports import EngineRefused, WorkflowEngine
from canaryflow.kernel.types import RolloutSpec
from tests.support.counting_database import CountingDatabase
from tests.workflows.conftest import short_policy
from workflows.dag import DagNode
from workflows.local.runner import LocalRunner
from workflows.steps.base import StepInput, StepOutcome

SPEC = RolloutSpec(rollout_id="r-1", model="minilm", baseline_version="1", canary_version="2", policy="fast")


class ProcessDied(BaseException):
    """Stands for the process being killed inside a step: nothing after it runs."""


@dataclass
class Script:
    """Answers per node id: a list consumed one call at a time (the last answer repeats)."""

    answers: dict[str, list[object]] = field(default_factory=dict)
    calls: list[tuple[str, StepInput]] = field(default_factory=list)

    def __call__(self, node: DagNode, step_input: StepInput) -> StepOutcome:
        self.calls.append((node.id, step_input))
        queue = self.answers.get(node.id, [])
        answer = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else "ok")
        if isinstance(answer, BaseException):
            raise answer
        if answer == "ok":
            return StepOutcome(state="succeeded", outputs={o: f"{node.id}-{o}" for o in node.outputs})
        if answer == "running":
            return StepOutcome(state="running", message="not enough samples")
        return StepOutcome(state="failed", outputs={"verdict": "fail"}, message=str(answer))

    def order(self) -> list[str]:
        out: list[str] = []
        for node_id, _ in self.calls:
            if not out or out[-1] != node_id:
                out.append(node_id)
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _runner(tmp_path, script, policy, clock=None):
    return LocalRunner(tmp_path / "controller.db", script, lambda name: policy, clock=clock or Clock())


def _phases(status):
    return {n.id: n.phase for n in status.nodes}


def test_runs_the_dag_in_order_polling_analysis_once_per_reconcile(tmp_path):
    script = Script({"analyze-5": ["running", "running", "ok"]})
    runner = _runner(tmp_path, script, short_policy(5, 50))
    name = runner.submit(SPEC)
    assert name == "canaryflow-r-1"
    assert runner.submit(SPEC) == name  # idempotent

    first = runner.reconcile(name)
    assert first.phase == "Running" and first.node == "analyze-5"
    assert [c[0] for c in script.calls] == ["render", "set-weight-5", "wait-ready", "analyze-5"]
    runner.reconcile(name)
    assert [c[0] for c in script.calls][-1] == "analyze-5" and len(script.calls) == 5
    final = runner.reconcile(name)
    assert final.phase == "Succeeded"
    assert script.order() == [
        "render",
        "set-weight-5",
        "wait-ready",
        "analyze-5",
        "set-weight-50",
        "wait-ready-50",
        "analyze-50",
        "promote",
    ]
    phases = _phases(final)
    assert phases["rollback"] == "Pending"
    assert {n.id: n.outputs for n in final.nodes}["set-weight-50"] == {
        "commit_sha": "set-weight-50-commit_sha"
    }
    # Analysis keeps the clock of its first tick (the step start), and the node's params reach the step.
    analyze_inputs = [c[1] for c in script.calls if c[0] == "analyze-5"]
    assert len({i.started_at for i in analyze_inputs}) == 1
    assert analyze_inputs[0].params == {"weight": 5, "step_index": 0}
    assert runner.reconcile(name).phase == "Succeeded"  # a finished workflow stays as it is
    assert len(script.calls) == 10


def test_failed_analysis_runs_the_rollback_exit_handler(tmp_path):
    script = Script({"analyze-5": ["p99 latency +40%"]})
    runner = _runner(tmp_path, script, short_policy(5, 50))
    name = runner.submit(SPEC)
    status = runner.reconcile(name)
    assert status.phase == "Failed"
    assert "analyze-5: p99 latency +40%" in status.message
    phases = _phases(status)
    assert phases["analyze-5"] == "Failed" and phases["rollback"] == "Succeeded"
    assert phases["set-weight-50"] == "Omitted" and phases["promote"] == "Omitted"
    rollback_input = script.calls[-1][1]
    # The rendered `--reason "workflow {{workflow.status}}" --failures "{{workflow.failures}}"`, resolved.
    assert script.calls[-1][0] == "rollback"
    assert rollback_input.reason == "workflow Failed: analyze-5 Failed: p99 latency +40%"


def test_retry_from_a_failed_step_runs_it_and_what_follows_again_and_the_exit_handler_once_more(tmp_path):
    script = Script({"analyze-50": ["p99 latency +40%", "ok"]})
    runner = _runner(tmp_path, script, short_policy(5, 50))
    name = runner.submit(SPEC)
    with pytest.raises(EngineRefused, match="is Running: only a failed workflow is retried"):
        runner.retry_from(name, "set-weight-50", "retried by alice")
    assert runner.reconcile(name).phase == "Failed"
    with pytest.raises(EngineRefused, match="no node 'set-weight-75'"):
        runner.retry_from(name, "set-weight-75", "retried by alice")
    done = len(script.calls)

    reset = runner.retry_from(name, "set-weight-50", "retried by alice: noise")
    assert reset == ["set-weight-50", "wait-ready-50", "analyze-50", "promote", "rollback"]
    status = runner.status(name)
    assert (status.phase, status.message) == ("Running", "")
    assert _phases(status)["analyze-5"] == "Succeeded" and _phases(status)["rollback"] == "Pending"
    assert {n.id: n.message for n in status.nodes}["set-weight-50"] == "retried by alice: noise"
    assert runner.reconcile(name).phase == "Succeeded"
    assert [c[0] for c in script.calls[done:]] == ["set-weight-50", "wait-ready-50", "analyze-50", "promote"]
    assert runner.reconcile(name).phase == "Succeeded"  # the exit handler is not due: all passed


def test_approval_gate_waits_for_resume(tmp_path):
    script = Script()
    runner = _runner(tmp_path, script, short_policy(5, approval=True))
    name = runner.submit(SPEC)
    runner.resume(name)  # too early: nothing is waiting, nothing is approved in advance
    status = runner.reconcile(name)
    assert status.node == "approval" and _phases(status)["approval"] == "Running"
    assert runner.reconcile(name).node == "approval"
    assert "promote" not in [c[0] for c in script.calls]
    runner.resume(name)
    status = runner.reconcile(name)
    assert status.phase == "Succeeded"
    promote_input = script.calls[-1][1]
    assert promote_input.upstream == {
        "approval_id": "request-approval-approval_id",
        "approval_head_sha": "request-approval-approval_head_sha",
    }


def test_stop_ends_running_nodes_and_rolls_back(tmp_path):
    script = Script({"analyze-5": ["running"]})
    runner = _runner(tmp_path, script, short_policy(5, 50))
    name = runner.submit(SPEC)
    runner.reconcile(name)
    runner.stop(name, "superseded by rollout r-2")
    status = runner.reconcile(name)
    assert status.phase == "Stopped"
    phases = _phases(status)
    assert phases["analyze-5"] == "Failed" and phases["rollback"] == "Succeeded"
    reason = script.calls[-1][1].reason
    assert reason == "workflow Failed: analyze-5 Failed: stopped: superseded by rollout r-2"


def test_network_steps_retry_with_backoff_then_fail(tmp_path):
    clock = Clock()
    script = Script({"set-weight-5": [ConnectionError("remote hung up")] * 5})
    runner = _runner(tmp_path, script, short_policy(5), clock)
    name = runner.submit(SPEC)
    status = runner.reconcile(name)
    node = {n.id: n for n in status.nodes}["set-weight-5"]
    assert node.phase == "Pending" and "retrying: remote hung up" in node.message
    assert status.node == "set-weight-5"
    runner.reconcile(name)  # backoff not over: no new attempt
    assert [c[0] for c in script.calls].count("set-weight-5") == 1
    for _ in range(3):
        clock.now += 120
        status = runner.reconcile(name)
    assert [c[0] for c in script.calls].count("set-weight-5") == 4  # 1 + limit 3
    assert status.phase == "Failed" and _phases(status)["set-weight-5"] == "Error"
    assert _phases(status)["rollback"] == "Succeeded"


def test_analysis_errors_are_not_retried(tmp_path):
    script = Script({"analyze-5": [RuntimeError("prometheus query failed")]})
    runner = _runner(tmp_path, script, short_policy(5))
    status = runner.reconcile(runner.submit(SPEC))
    assert _phases(status)["analyze-5"] == "Error" and status.phase == "Failed"


def test_restart_continues_where_the_process_died(tmp_path):
    clock = Clock()
    dying = Script({"analyze-5": ["running", ProcessDied()]})
    runner = _runner(tmp_path, dying, short_policy(5, 50), clock)
    name = runner.submit(SPEC)
    runner.reconcile(name)
    clock.now += 5
    with pytest.raises(ProcessDied):
        runner.reconcile(name)

    script = Script()
    restarted = _runner(tmp_path, script, short_policy(5, 50), clock)
    status = restarted.status(name)
    assert _phases(status)["analyze-5"] == "Running"
    clock.now += 5
    assert restarted.reconcile(name).phase == "Succeeded"
    # Done nodes are not run again; the analysis goes on with its original start time.
    assert script.order() == ["analyze-5", "set-weight-50", "wait-ready-50", "analyze-50", "promote"]
    assert script.calls[0][1].started_at == 1000.0


def test_an_action_killed_midway_runs_again(tmp_path):
    runner = _runner(tmp_path, Script({"set-weight-5": [ProcessDied()]}), short_policy(5))
    name = runner.submit(SPEC)
    with pytest.raises(ProcessDied):
        runner.reconcile(name)
    script = Script()
    status = _runner(tmp_path, script, short_policy(5)).reconcile(name)
    assert script.order()[0] == "set-weight-5"
    assert status.phase == "Succeeded"
    assert [c[0] for c in script.calls].count("set-weight-5") == 1


def test_is_a_workflow_engine(tmp_path):
    assert isinstance(_runner(tmp_path, Script(), short_policy(5)), WorkflowEngine)


def test_unknown_workflow_is_a_key_error(tmp_path):
    with pytest.raises(KeyError):
        _runner(tmp_path, Script(), short_policy(5)).reconcile("canaryflow-nope")


def test_steps_get_the_policy_the_rollout_was_submitted_with(tmp_path):
    submitted = short_policy(5, 50)
    runner = _runner(tmp_path, Script({"analyze-5": ["running"]}), submitted)
    name = runner.submit(SPEC)
    runner.reconcile(name)
    # The policy file changes (a step fewer) while the rollout runs; a restarted runner keeps the DAG and
    # hands the steps the policy the DAG was built from.
    script = Script({"analyze-5": ["running"]})
    status = _runner(tmp_path, script, short_policy(5)).reconcile(name)
    assert "set-weight-50" in {n.id for n in status.nodes}
    assert script.calls[0][1].policy == submitted


def _counted(tmp_path, script, policy, clock=None):
    db = CountingDatabase(SqliteDatabase(tmp_path / "controller.db"))
    return db, LocalRunner(db, script, lambda name: policy, clock=clock or Clock())


@pytest.mark.parametrize(
    "answers, approval, stop_at",
    [
        ({"analyze-5": ["running", "running", "ok"], "analyze-50": ["running", "ok"]}, False, None),
        ({"analyze-5": ["running", "p99 latency +40%"]}, False, None),
        ({"set-weight-5": [ConnectionError("remote hung up"), "ok"]}, True, None),
        ({"analyze-5": ["running"]}, False, 2),
    ],
    ids=["passes", "fails-and-rolls-back", "retries-then-waits-for-approval", "stopped"],
)
def test_a_reconciles_status_is_what_the_store_holds(tmp_path, answers, approval, stop_at):
    """The status a reconcile answers is built from the run and nodes it read and wrote (each change
    stored as made), not read again: it must equal a fresh read at every reconcile."""
    clock = Clock()
    _, runner = _counted(tmp_path, Script(answers), short_policy(5, 50, approval=approval), clock)
    name = runner.submit(SPEC)
    for tick in range(8):
        if tick == stop_at:
            runner.stop(name, "superseded")
        if tick == 4 and approval:
            runner.resume(name)
        status = runner.reconcile(name)
        assert status == runner.status(name)
        assert [n.outputs for n in status.nodes] == [n.outputs for n in runner.status(name).nodes]
        clock.now += 120
    assert status.phase in ("Succeeded", "Failed", "Stopped")


def test_a_reconcile_reads_the_run_and_its_nodes_once_and_writes_only_what_changed(tmp_path):
    db, runner = _counted(tmp_path, Script({"analyze-5": ["running"]}), short_policy(5, 50))
    name = runner.submit(SPEC)
    runner.reconcile(name)  # up to the analysis, which answers "running"
    db.reset()
    status = runner.reconcile(name)  # the analysis answers the same again: its row stays as it was
    assert status.node == "analyze-5"
    assert len(db.reads) == 2 and db.writes == 0, db.reads

    db, runner = _counted(tmp_path / "gate", Script(), short_policy(5, approval=True))
    name = runner.submit(SPEC)
    assert runner.reconcile(name).node == "approval"
    db.reset()
    assert runner.reconcile(name).node == "approval"  # still waiting: nothing to write
    assert len(db.reads) == 2 and db.writes == 0, db.reads
