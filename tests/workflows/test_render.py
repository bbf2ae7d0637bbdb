"""The rendered Argo resources: valid against Argo's schema, with the documented DAG shape."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from canaryflow.kernel.types import RolloutSpec
from tests.workflows.conftest import short_policy
from workflows.argo.install import install_manifests
from workflows.argo.render import (
    DISPLAY_NAME,
    LABEL_MODEL,
    LABEL_ROLLOUT,
    TITLE,
    manifest,
    rollout_template,
    rollout_workflow,
    workflow_from_template,
)
from workflows.dag import build_rollout_dag
from workflows.workflow_settings import WorkflowSettings

SPEC = RolloutSpec(rollout_id="r-42", model="minilm", baseline_version="1", canary_version="2", policy="fast")


def _templates(doc):
    return {t["name"]: t for t in doc["spec"]["templates"]}


@pytest.mark.parametrize("approval", [False, True])
def test_template_and_workflows_validate_against_argo_schema(argo_schema, approval):
    policy = short_policy(5, 25, 50, approval=approval)
    settings = WorkflowSettings()
    for resource in (
        rollout_template(policy, "production", settings),
        rollout_workflow(SPEC, policy, settings),
        workflow_from_template(SPEC, policy, settings),
    ):
        argo_schema.validate(manifest(resource))


def test_schema_check_is_real(argo_schema):
    doc = manifest(rollout_template(short_policy(5), "production", WorkflowSettings()))
    doc["spec"]["templates"][0]["retryStrategy"] = {"limit": {"not": "valid"}}
    with pytest.raises(Exception, match="valid"):
        argo_schema.validate(doc)


def test_dag_shape_without_gate():
    dag = build_rollout_dag(short_policy(5, 50), "production")
    assert [n.id for n in dag.nodes] == [
        "render",
        "set-weight-5",
        "wait-ready",
        "analyze-5",
        "set-weight-50",
        "wait-ready-50",
        "analyze-50",
        "promote",
    ]
    assert [n.depends for n in dag.nodes[1:]] == [(a.id,) for a in dag.nodes[:-1]]
    assert all(n.kind != "suspend" for n in dag.nodes)
    assert dag.exit_node.id == "rollback"
    # Network steps retry, verdicts never do.
    assert all(n.retry is None for n in dag.nodes if n.kind == "analyze")
    assert all(n.retry is not None for n in dag.nodes if n.step in {"set-weight", "promote", "rollback"})


def test_gate_only_where_the_policy_asks():
    gated = build_rollout_dag(short_policy(5, approval=True), "production")
    assert [n.id for n in gated.nodes][-3:] == ["request-approval", "approval", "promote"]
    assert gated.node("approval").kind == "suspend"
    assert gated.node("promote").inputs_from["approval_id"].node == "request-approval"
    # The policy gates production only: staging rollouts do not wait.
    assert not build_rollout_dag(short_policy(5, approval=True), "staging").gated


def test_rendered_dag_tasks_exit_handler_and_outputs():
    policy = short_policy(5, 50, approval=True)
    doc = manifest(rollout_template(policy, "production", WorkflowSettings(image="reg/canaryflow:1")))
    templates = _templates(doc)
    tasks = {t["name"]: t for t in templates["rollout"]["dag"]["tasks"]}
    assert tasks["wait-ready-50"]["depends"] == "set-weight-50"  # each split confirmed before analysis
    assert tasks["analyze-50"]["depends"] == "wait-ready-50"
    assert tasks["promote"]["depends"] == "approval"
    assert "suspend" in templates["approval"]
    assert doc["spec"]["onExit"] == "exit-handler"
    (rollback,) = templates["exit-handler"]["steps"][0]
    assert rollback["when"] == "{{workflow.status}} != Succeeded"
    analyze = templates["analyze-5"]
    assert analyze["container"]["image"] == "reg/canaryflow:1"
    assert analyze["container"]["args"][:3] == ["workflow", "step", "analyze"]
    assert "retryStrategy" not in analyze
    outputs = {p["name"]: p["valueFrom"]["path"] for p in analyze["outputs"]["parameters"]}
    assert outputs == {
        "verdict": "/tmp/outputs/verdict",
        "verdict_json": "/tmp/outputs/verdict_json",
        "window_start": "/tmp/outputs/window_start",
    }
    assert analyze["outputs"]["artifacts"][0]["name"] == "report"
    assert analyze["annotations"][DISPLAY_NAME] == "Analyze canary at 5%"
    assert templates["set-weight-50"]["retryStrategy"]["limit"] == "3"
    promote_args = templates["promote"]["container"]["args"]
    promote_input = json.loads(promote_args[4])
    # The leaf reads its own inputs; the DAG task, where `tasks.*` is in scope, passes the values on.
    assert promote_args[7:] == [
        "--upstream",
        "approval_head_sha={{inputs.parameters.approval_head_sha}}",
        "--upstream",
        "approval_id={{inputs.parameters.approval_id}}",
    ]
    assert templates["promote"]["inputs"]["parameters"] == [
        {"name": "approval_head_sha"},
        {"name": "approval_id"},
    ]
    request = "{{tasks.request-approval.outputs.parameters.%s}}"
    assert tasks["promote"]["arguments"]["parameters"] == [
        {"name": "approval_head_sha", "value": request % "approval_head_sha"},
        {"name": "approval_id", "value": request % "approval_id"},
    ]
    assert promote_input["spec"]["canary_version"] == "{{workflow.parameters.canary-version}}"
    assert "--reason" in templates["rollback"]["container"]["args"]
    params = {p["name"] for p in doc["spec"]["arguments"]["parameters"]}
    assert params == {"model", "baseline-version", "canary-version", "policy", "environment", "rollout-id"}
    labels_from = doc["spec"]["workflowMetadata"]["labelsFrom"]
    assert set(labels_from) == {LABEL_MODEL, LABEL_ROLLOUT}


def test_workflow_names_model_and_versions_for_the_ui():
    doc = manifest(rollout_workflow(SPEC, short_policy(5), WorkflowSettings()))
    meta = doc["metadata"]
    assert meta["labels"][LABEL_MODEL] == "minilm"
    assert meta["labels"][LABEL_ROLLOUT] == "r-42"
    assert "minilm" in meta["annotations"][TITLE] and "v1" in meta["annotations"][TITLE]
    args = {p["name"]: p["value"] for p in doc["spec"]["arguments"]["parameters"]}
    assert args["canary-version"] == "2" and args["rollout-id"] == "r-42"


def test_install_manifests_validate(argo_schema):
    docs = install_manifests(short_policy(5, 50), "production", WorkflowSettings(argo_namespace="ml"))
    kinds = [d["kind"] for d in docs]
    assert kinds.count("ServiceAccount") == 2 and kinds[-1] == "WorkflowTemplate"
    version = kubernetes_validate.latest_version()
    for doc in docs[:-1]:
        kubernetes_validate.validate(doc, version, strict=True)
    argo_schema.validate(docs[-1])
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "canaryflow-workflow")
    task_results = {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"]}
    task_results["verbs"] = ["create", "patch"]
    assert task_results in role["rules"]
    # Round-trips through YAML as `kubectl apply -f` reads it.
    assert list(yaml.safe_load_all(yaml.safe_dump_all(docs))) == docs


def test_a_policy_file_is_referenced_the_same_way_by_template_and_workflow(argo_schema):
    ref = "/etc/canaryflow/policies/fast.yaml"
    policy = short_policy(5)
    template = manifest(rollout_template(policy, "production", WorkflowSettings(), policy_ref=ref))
    (param,) = [p for p in template["spec"]["arguments"]["parameters"] if p["name"] == "policy"]
    assert param["value"] == ref and param["enum"] == [ref]
    workflow = manifest(
        workflow_from_template(SPEC.model_copy(update={"policy": ref}), policy, WorkflowSettings())
    )
    args = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert args["policy"] == ref
    assert workflow["spec"]["workflowTemplateRef"]["name"] == template["metadata"]["name"]
    argo_schema.validate(template)


def test_every_step_is_analysed_only_after_its_split_is_confirmed():
    """Argo CD syncs each commit in its own time: each analysis waits for its own weight to be live."""
    dag = build_rollout_dag(short_policy(5, 20, 50), "production")
    analyses = [n for n in dag.nodes if n.step == "analyze"]
    assert len(analyses) == 3
    for analyze in analyses:
        (wait_id,) = analyze.depends
        wait = dag.node(wait_id)
        assert wait.step == "wait-ready" and wait.kind == "wait"
        assert wait.params["weight"] == analyze.params["weight"]
        (commit_id,) = wait.depends
        assert dag.node(commit_id).params["weight"] == analyze.params["weight"]
