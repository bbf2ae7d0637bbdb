"""People's actions on a rollout run by Argo Workflows: the controller's actions through ArgoEngine
against the local server speaking the Argo Server's API (tests/workflows/argo_server.py)."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from canaryflow.adapters.registry.mlflow import MlflowRegistry
from canaryflow.kernel.contracts.directives import TAG_PROMOTE_NOW, Directive, directive_for
from controller.actions import ActionRefused, ActionRequest, RolloutActions
from controller.controller_settings import ControllerSettings
from controller.observability import ControllerMetrics
from controller.reconcile import Reconciler
from controller.rollout.actions import ActionStore
from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore
from tests.controller.harness import add_rollout, policy, verdict
from tests.workflows.argo_server import ArgoServerThread
from tests.workflows.rollout_support import register_versions
from workflows.argo.argo_client import ArgoEngine
from workflows.workflow_settings import WorkflowSettings

TOKEN = "argo-token-0123"
POLICY = policy(5, 50)


@pytest.fixture
def argo():
    with ArgoServerThread(TOKEN) as state:
        yield state


def _setup(tmp_path, argo, registry=None):
    settings = ControllerSettings(db_path=tmp_path / "controller.db", mlflow_webhook_secret=SecretStr("s"))
    store = RolloutStore(settings.db_path)
    workflows = WorkflowSettings(argo_host=argo.url, argo_namespace="ml", argo_token=SecretStr(TOKEN))
    engine = ArgoEngine(workflows, policy_for=lambda name: POLICY)
    reconciler = Reconciler(
        settings, store, engine, registry, ControllerMetrics(store), policy_loader=lambda name: POLICY
    )
    acts = RolloutActions(store, ActionStore(store.path), reconciler, engine)
    reconciler.actions = acts
    return reconciler, store, acts


def _node(name: str, phase: str, children: list[str], **outputs: str) -> dict:
    params = [{"name": k, "value": v} for k, v in outputs.items()]
    return {"displayName": name, "type": "Pod", "phase": phase, "children": children,
            "startedAt": "2026-11-23T16:00:01Z", "outputs": {"parameters": params}}  # fmt: skip


def _at_step_two(analysis: str) -> list[dict]:
    return [
        _node("set-weight-5", "Succeeded", ["wait-ready"], commit_sha="a" * 40),
        _node("wait-ready", "Succeeded", ["analyze-5"]),
        _node("analyze-5", "Succeeded", ["set-weight-50"], verdict="pass", verdict_json=verdict("promote")),
        _node("set-weight-50", "Succeeded", ["wait-ready-50"], commit_sha="b" * 40),
        _node("wait-ready-50", "Succeeded", ["analyze-50"]),
        _node("analyze-50", analysis, [], **({"verdict": "fail", "verdict_json": verdict("rollback")}
                                             if analysis == "Failed" else {})),
    ]  # fmt: skip


def _puts(argo) -> list[tuple[str, dict]]:
    return [(r.path.rsplit("/", 1)[-1], r.body) for r in argo.requests if r.method == "PUT"]


def test_pause_and_resume_suspend_and_resume_the_argo_workflow(tmp_path, argo):
    reconciler, store, acts = _setup(tmp_path, argo)
    rid = add_rollout(store)
    reconciler.tick()
    name = store.get(rid).workflow
    argo.set_nodes(name, "Running", _at_step_two("Running"))
    reconciler.tick()
    assert (store.get(rid).phase, store.get(rid).step_index) == ("canary", 1)

    paused, _ = acts.request(rid, ActionRequest("pause", "alice", "dashboard looks odd"))
    assert paused.state == "applied" and argo.workflows[name]["spec"]["suspend"] is True
    assert _puts(argo)[-1] == ("suspend", {"name": name, "namespace": "ml"})
    assert store.get(rid).waiting_reason == "paused by alice: dashboard looks odd"
    resumed, _ = acts.request(rid, ActionRequest("resume", "alice"))
    assert resumed.state == "applied" and "suspend" not in argo.workflows[name]["spec"]
    assert _puts(argo)[-1] == ("resume", {"name": name, "namespace": "ml"})  # no node selector: unpause
    assert store.get(rid).waiting_reason is None


def test_a_failed_step_is_retried_by_argos_retry_from_its_commit(tmp_path, argo):
    reconciler, store, acts = _setup(tmp_path, argo)
    rid = add_rollout(store)
    reconciler.tick()
    name = store.get(rid).workflow
    rollback = {"displayName": "rollback", "name": f"{name}.onExit", "type": "Pod", "phase": "Succeeded"}
    argo.set_nodes(name, "Failed", [*_at_step_two("Failed"), rollback], message="child 'analyze-50' failed")
    for _ in range(2):
        reconciler.tick()
    assert store.get(rid).phase in ("rolled_back", "failed")

    action, _ = acts.request(rid, ActionRequest("retry", "alice", "the noisy neighbour is gone"))
    assert action.outcome == "step 2 at 50% runs again, from set-weight-50"
    retry = {"restartSuccessful": True, "nodeFieldSelector": "displayName=set-weight-50"}
    assert _puts(argo)[-1] == ("retry", {"name": name, "namespace": "ml", **retry})
    record = store.get(rid)
    assert (record.phase, record.step_index, record.finished_at) == ("canary", 1, None)
    left = {n["displayName"] for n in argo.workflows[name]["status"]["nodes"].values()}
    assert left == {"set-weight-5", "wait-ready", "analyze-5"}  # Argo runs the rest again
    reconciler.tick()  # the workflow runs again: the rollout stays in the canary
    assert store.get(rid).phase == "canary"
    assert any("retried by alice" in t.reason for t in store.detail(rid).transitions)
    with pytest.raises(ActionRefused):
        acts.request(rid, ActionRequest("retry", "bob", "again"))


def test_promote_now_on_argo_leaves_the_directive_its_pods_read_on_the_canarys_version(
    tmp_path, argo, mlflow_server
):
    v1, v2 = register_versions(mlflow_server.tracking_uri, "argo-now", 2)
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    reconciler, store, acts = _setup(tmp_path, argo)
    rid = add_rollout(store)
    reconciler.tick()
    with pytest.raises(ActionRefused, match="no registry is configured"):  # no way to tell the pods
        acts.request(rid, ActionRequest("promote", "alice", "hotfix"))

    reconciler, store, acts = _setup(tmp_path / "with-registry", argo, registry)
    now = time.time()
    store.create_rollout(
        RolloutRecord(id="argo-now-v2-a", model="argo-now", baseline_version=v1, canary_version=v2,
                      created_at=now, updated_at=now)
    )  # fmt: skip
    reconciler.tick()
    name = store.get("argo-now-v2-a").workflow
    argo.set_nodes(name, "Running", _at_step_two("Running")[:3])
    reconciler.tick()
    action, _ = acts.request("argo-now-v2-a", ActionRequest("promote", "alice", "hotfix, cannot wait"))
    assert action.state == "applied" and "canaryflow.promote_now" in action.outcome
    tag = registry.version_tags("argo-now", v2)[TAG_PROMOTE_NOW]
    assert directive_for({TAG_PROMOTE_NOW: tag}, TAG_PROMOTE_NOW, "argo-now-v2-a") == Directive(
        rollout_id="argo-now-v2-a", note="promote by alice: hotfix, cannot wait"
    )
    assert not [r for r in argo.requests if r.method == "PUT"]  # Argo itself is not asked anything
