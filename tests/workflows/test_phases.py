"""Bake and watch as the DAG, the Argo template, the controller's mirror and the state machine see them."""

from __future__ import annotations

import json

from canaryflow.kernel.rollout import RolloutState, Started, apply
from canaryflow.kernel.types import WorkflowNodeStatus, WorkflowStatus
from controller.rollout.workflow_mirror import mirror
from tests.workflows.conftest import short_policy
from workflows.argo.render import manifest, rollout_template
from workflows.dag import build_rollout_dag
from workflows.workflow_settings import WorkflowSettings

VERDICT = json.dumps({"decision": "promote", "checks": []})


def test_dag_bakes_after_the_last_step_and_watches_after_promotion():
    policy = short_policy(5, 50).model_copy(update={"bake_s": 60.0, "watch_s": 600.0})
    dag = build_rollout_dag(policy, "staging")
    assert [n.id for n in dag.nodes][-4:] == ["analyze-50", "bake", "promote", "watch"]
    bake, watch = dag.node("bake"), dag.node("watch")
    assert bake.kind == watch.kind == "analyze" and bake.retry is None and watch.retry is None
    assert bake.inputs_from["window_start"].node == "analyze-50"
    assert watch.depends == ("promote",) and watch.inputs_from["window_start"].node == "bake"
    # Without them the DAG is as before.
    assert "bake" not in [n.id for n in build_rollout_dag(short_policy(5, 50), "staging").nodes]
    doc = manifest(rollout_template(policy, "staging", WorkflowSettings(image="reg/canaryflow:1")))
    tasks = {t["name"]: t for t in _rollout_tasks(doc)}
    assert tasks["watch"]["depends"] == "promote" and tasks["bake"]["depends"] == "analyze-50"


def _rollout_tasks(doc: dict) -> list[dict]:
    rollout = next(t for t in doc["spec"]["templates"] if t["name"] == "rollout")
    return list(rollout["dag"]["tasks"])


def _node(node_id, phase, message="", **outputs):
    return WorkflowNodeStatus(id=node_id, phase=phase, outputs=outputs, started_at=1.0, message=message)


def test_mirror_and_machine_through_bake_and_a_failed_watch():
    status = WorkflowStatus(
        name="wf",
        phase="Failed",
        message="watch: fail",
        nodes=[
            _node("render", "Succeeded"),
            _node("set-weight-10", "Succeeded", commit_sha="a" * 40),
            _node("wait-ready", "Succeeded"),
            _node("analyze-10", "Succeeded", verdict="pass", verdict_json=VERDICT),
            _node("bake", "Succeeded", verdict="pass", verdict_json=VERDICT),
            _node("promote", "Succeeded", commit_sha="b" * 40),
            _node("watch", "Failed", "fail watching: latency p50 +100%", verdict="fail"),
            _node("rollback", "Succeeded", commit_sha="c" * 40),
        ],
    )
    view = mirror(status, [10], bake_s=60, watch_s=600)
    kinds = [e.kind for e in view.events]
    assert kinds == [
        "step_started", "bake_started", "promote_started", "watch_started", "rollback_started", "rolled_back",
    ]  # fmt: skip
    assert [(s.phase, s.status) for s in view.steps] == [
        ("step", "pass"),
        ("bake", "pass"),
        ("watch", "fail"),
    ]
    state = apply(RolloutState(phase="pending"), Started(workflow="wf")).after
    phases = []
    for event in view.events:
        state = apply(state, event).after
        phases.append(state.phase)
    assert phases == ["canary", "baking", "promoting", "watching", "rolling_back", "rolled_back"]
    rollback = next(e for e in view.events if e.kind == "rollback_started")
    assert rollback.cause.startswith("watch after promotion: fail watching")
