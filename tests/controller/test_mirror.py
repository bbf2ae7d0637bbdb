"""The mirror reads node statuses (as both engines report them: DAG node ids, node outputs) into events."""

import json

from canaryflow.kernel.types import WorkflowNodeStatus, WorkflowStatus
from controller.rollout.workflow_mirror import mirror


def node(node_id, phase, **outputs):
    return WorkflowNodeStatus(id=node_id, phase=phase, outputs=outputs, started_at=1.0)


VERDICT = json.dumps({"decision": "promote", "checks": []})


def kinds(view):
    return [e.kind for e in view.events]


def test_promoted_workflow():
    status = WorkflowStatus(
        name="wf",
        phase="Succeeded",
        nodes=[
            node("render", "Succeeded"),
            node("set-weight-10", "Succeeded", commit_sha="a" * 40),
            node("wait-ready", "Succeeded"),
            node("analyze-10", "Succeeded", verdict="pass", verdict_json=VERDICT),
            node("set-weight-50", "Succeeded", commit_sha="b" * 40),
            node("analyze-50", "Succeeded", verdict="pass", verdict_json=VERDICT),
            node("promote", "Succeeded", commit_sha="c" * 40),
            node("rollback", "Skipped"),
        ],
    )
    view = mirror(status, [10, 50])
    assert kinds(view) == ["step_started", "step_started", "promote_started", "promoted"]
    assert [c[0][0] for c in view.commits] == ["a", "b", "c"]
    assert [(s.index, s.status) for s in view.steps] == [(0, "pass"), (1, "pass")]
    assert not view.rollback_started


def test_stopped_workflow_rolled_back_by_its_exit_handler():
    status = WorkflowStatus(
        name="wf",
        phase="Stopped",
        message="Stopped with strategy 'Stop'",
        nodes=[
            node("set-weight-10", "Succeeded", commit_sha="a" * 40),
            node("analyze-10", "Failed"),
            node("rollback", "Succeeded", commit_sha="d" * 40),
        ],
    )
    view = mirror(status, [10, 50])
    assert kinds(view) == ["step_started", "rollback_started", "rolled_back"]
    assert ("d" * 40, "rollback") in view.commits


def test_analysis_still_running_reports_why():
    status = WorkflowStatus(
        name="wf",
        phase="Running",
        node="analyze-10",
        nodes=[
            node("set-weight-10", "Succeeded", commit_sha="a" * 40),
            WorkflowNodeStatus(
                id="analyze-10", phase="Running", message="latency_p95: 120 canary samples of 200"
            ),
        ],
    )
    view = mirror(status, [10, 50])
    assert view.waiting_reason == "latency_p95: 120 canary samples of 200"
    assert view.steps[0].status == "running" and view.first_commit_done


def test_rollback_that_failed_is_a_failed_workflow():
    status = WorkflowStatus(
        name="wf",
        phase="Error",
        message="rollback failed",
        nodes=[node("set-weight-10", "Succeeded"), node("rollback", "Error")],
    )
    assert kinds(mirror(status, [10]))[-1] == "workflow_failed"
