"""ArgoEngine against a local server speaking the Argo Server REST API: the exact requests it makes."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from canaryflow.kernel.ports import EngineRefused, WorkflowEngine
from canaryflow.kernel.types import RolloutSpec
from tests.workflows.argo_server import ArgoServerThread, FakeArgo
from tests.workflows.conftest import short_policy
from workflows.argo.argo_client import ArgoEngine, ArgoError
from workflows.workflow_settings import WorkflowSettings

TOKEN = "s3cr3t-token"
SPEC = RolloutSpec(rollout_id="r-7", model="minilm", baseline_version="3", canary_version="4", policy="fast")
POLICY = short_policy(5, 50, approval=True)


@pytest.fixture
def argo():
    with ArgoServerThread(TOKEN) as state:
        yield state


def _engine(argo: FakeArgo, token: str = TOKEN) -> ArgoEngine:
    settings = WorkflowSettings(argo_host=argo.url, argo_namespace="ml", argo_token=SecretStr(token))
    return ArgoEngine(settings, policy_for=lambda name: POLICY)


def test_install_posts_the_template(argo, argo_schema):
    engine = _engine(argo)
    name = engine.install(POLICY, "production")
    assert name == "canaryflow-rollout-fast-production"
    (req,) = argo.requests
    assert (req.method, req.path) == ("POST", "/api/v1/workflow-templates/ml")
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["Content-Type"] == "application/json"
    assert req.body["namespace"] == "ml"
    argo_schema.validate(req.body["template"])
    # Installing again is not an error: the template is already there.
    assert engine.install(POLICY, "production") == name
    assert len(argo.requests) == 2


def test_submit_creates_a_workflow_from_the_template(argo, argo_schema):
    engine = _engine(argo)
    name = engine.submit(SPEC)
    assert name == "canaryflow-r-7"
    (req,) = argo.requests
    assert (req.method, req.path) == ("POST", "/api/v1/workflows/ml")
    workflow = req.body["workflow"]
    argo_schema.validate(workflow)
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "canaryflow-rollout-fast-production"}
    args = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert args == {
        "model": "minilm",
        "baseline-version": "3",
        "canary-version": "4",
        "policy": "fast",
        "environment": "production",
        "rollout-id": "r-7",
    }
    assert workflow["metadata"]["labels"]["canaryflow.io/rollout-id"] == "r-7"
    # A resubmission after a controller crash finds the workflow there and reuses it.
    assert engine.submit(SPEC) == name
    assert len(argo.workflows) == 1


def test_status_maps_phases_nodes_and_outputs(argo):
    engine = _engine(argo)
    name = engine.submit(SPEC)
    argo.set_nodes(
        name,
        "Running",
        [
            {"displayName": name, "type": "DAG", "phase": "Running"},
            {
                "displayName": "set-weight-5",
                "type": "Retry",
                "phase": "Succeeded",
                "startedAt": "2026-11-23T16:00:01Z",
                "finishedAt": "2026-11-23T16:00:05Z",
                "outputs": {"parameters": [{"name": "commit_sha", "value": "abc123"}]},
            },
            {"displayName": "set-weight-5(0)", "type": "Pod", "phase": "Succeeded"},
            {
                "displayName": "analyze-5",
                "type": "Pod",
                "phase": "Succeeded",
                "startedAt": "2026-11-23T16:00:10Z",
                "outputs": {"parameters": [{"name": "verdict", "value": "pass"}]},
            },
            {
                "displayName": "approval",
                "type": "Suspend",
                "phase": "Running",
                "startedAt": "2026-11-23T16:01:00Z",
            },
        ],
    )
    status = engine.reconcile(name)
    req = argo.requests[-1]
    assert (req.method, req.path) == ("GET", f"/api/v1/workflows/ml/{name}")
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert status.phase == "Running"
    assert status.node == "approval"
    nodes = {n.id: n for n in status.nodes}
    assert list(nodes) == ["set-weight-5", "analyze-5", "approval"]
    assert nodes["set-weight-5"].outputs == {"commit_sha": "abc123"}
    assert nodes["set-weight-5"].finished_at - nodes["set-weight-5"].started_at == 4.0
    assert nodes["analyze-5"].outputs["verdict"] == "pass"


def test_resume_selects_the_approval_node(argo):
    engine = _engine(argo)
    name = engine.submit(SPEC)
    argo.set_nodes(name, "Running", [{"displayName": "approval", "type": "Suspend", "phase": "Running"}])
    engine.resume(name)
    req = _puts(argo)[-1]
    assert (req.method, req.path) == ("PUT", f"/api/v1/workflows/ml/{name}/resume")
    assert req.body == {"name": name, "namespace": "ml", "nodeFieldSelector": "displayName=approval"}
    assert engine.status(name).nodes[0].phase == "Succeeded"


def test_stop_passes_the_reason_and_reads_back_stopped(argo):
    engine = _engine(argo)
    name = engine.submit(SPEC)
    engine.stop(name, "pull request rejected")
    req = _puts(argo)[-1]
    assert (req.method, req.path) == ("PUT", f"/api/v1/workflows/ml/{name}/stop")
    assert req.body == {"name": name, "namespace": "ml", "message": "pull request rejected"}
    assert engine.status(name).phase == "Stopped"


def _puts(argo: FakeArgo) -> list:
    return [r for r in argo.requests if r.method == "PUT"]


def test_pause_suspends_the_workflow_and_resume_clears_it_without_passing_the_approval_gate(argo):
    engine = _engine(argo)
    name = engine.submit(SPEC)
    argo.set_nodes(name, "Running", [{"displayName": "analyze-5", "type": "Pod", "phase": "Running"}])
    engine.pause(name)
    req = _puts(argo)[-1]
    assert (req.path, req.body) == (f"/api/v1/workflows/ml/{name}/suspend", {"name": name, "namespace": "ml"})
    assert argo.workflows[name]["spec"]["suspend"] is True
    engine.unpause(name)
    req = _puts(argo)[-1]
    assert (req.path, req.body) == (f"/api/v1/workflows/ml/{name}/resume", {"name": name, "namespace": "ml"})
    assert "suspend" not in argo.workflows[name]["spec"]
    puts = len(_puts(argo))
    engine.unpause(name)  # not paused: nothing to do (a repeated resume)
    assert len(_puts(argo)) == puts

    # At the approval gate: a pause is refused, and so is an unpause that would pass the gate too.
    argo.set_nodes(name, "Running", [{"displayName": "approval", "type": "Suspend", "phase": "Running"}])
    with pytest.raises(EngineRefused, match="waits at approval"):
        engine.pause(name)
    argo.workflows[name]["spec"]["suspend"] = True  # paused just as the gate was reached
    with pytest.raises(EngineRefused, match="approve or reject"):
        engine.unpause(name)
    assert argo.workflows[name]["status"]["nodes"][f"{name}-0"]["phase"] == "Running"
    engine.resume(name)  # the approval: the gate passes and the pause ends with it
    assert argo.workflows[name]["status"]["nodes"][f"{name}-0"]["phase"] == "Succeeded"
    assert "suspend" not in argo.workflows[name]["spec"]


def test_stop_of_a_paused_workflow_unpauses_it_so_the_exit_handler_runs(argo):
    engine = _engine(argo)
    name = engine.submit(SPEC)
    argo.set_nodes(name, "Running", [{"displayName": "analyze-5", "type": "Pod", "phase": "Running"}])
    engine.pause(name)
    engine.stop(name, "aborted by alice: p99")
    assert [r.path.rsplit("/", 1)[-1] for r in _puts(argo)][-2:] == ["stop", "resume"]
    assert "suspend" not in argo.workflows[name]["spec"] and engine.status(name).phase == "Stopped"
    with pytest.raises(ArgoError, match="cannot suspend completed workflows"):
        engine.pause(name)


def test_retry_from_a_step_asks_argo_to_restart_that_node_and_what_follows(argo):
    engine = _engine(argo)
    name = engine.submit(SPEC)
    chain = ["set-weight-5", "wait-ready", "analyze-5", "set-weight-50", "wait-ready-50", "analyze-50"]
    nodes = [
        {"displayName": d, "type": "Pod", "phase": "Succeeded", "children": chain[i + 1 : i + 2]}
        for i, d in enumerate(chain)
    ]
    nodes[-1]["phase"] = "Running"
    argo.set_nodes(name, "Running", nodes)
    with pytest.raises(EngineRefused, match="is Running: only a failed workflow is retried"):
        engine.retry_from(name, "set-weight-50", "retried by alice")
    nodes[-1]["phase"] = "Failed"
    exit_node = {"displayName": "rollback", "name": f"{name}.onExit", "type": "Pod", "phase": "Succeeded"}
    argo.set_nodes(name, "Failed", [*nodes, exit_node], message="child 'analyze-50' failed")
    assert engine.retry_from(name, "set-weight-50", "retried by alice: noise") == ["set-weight-50"]
    req = _puts(argo)[-1]
    assert (req.path, req.body) == (
        f"/api/v1/workflows/ml/{name}/retry",
        {
            "name": name,
            "namespace": "ml",
            "restartSuccessful": True,
            "nodeFieldSelector": "displayName=set-weight-50",
        },
    )
    status = engine.status(name)
    assert status.phase == "Pending"  # what Argo's controller then runs again: the step and what follows
    assert sorted(n.id for n in status.nodes) == ["analyze-5", "set-weight-5", "wait-ready"]


def test_errors_name_the_call_and_the_server_reason(argo):
    with pytest.raises(ArgoError, match=r"create workflow: .*401.*token not valid"):
        _engine(argo, token="wrong").submit(SPEC)
    with pytest.raises(ArgoError, match=r"get workflow: .*404.*not found"):
        _engine(argo).status("canaryflow-missing")


def test_unreachable_server_is_an_argo_error():
    settings = WorkflowSettings(argo_host="http://127.0.0.1:9", argo_namespace="ml")
    with pytest.raises(ArgoError, match="get workflow"):
        ArgoEngine(settings, policy_for=lambda name: POLICY).status("x")


def test_a_server_that_never_answers_is_an_argo_error_within_the_timeout():
    import socket
    import time

    with socket.socket() as silent:  # accepts the connection (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings = WorkflowSettings(argo_host=host, argo_namespace="ml", argo_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(ArgoError, match="get workflow"):
            ArgoEngine(settings, policy_for=lambda name: POLICY).status("x")
        assert time.monotonic() - started < 5


def test_is_a_workflow_engine(argo):
    assert isinstance(_engine(argo), WorkflowEngine)


def test_link_points_at_the_ui(argo):
    assert _engine(argo).link("canaryflow-r-7") == f"{argo.url}/workflows/ml/canaryflow-r-7"


def test_lint_sends_the_whole_workflow_and_reports_the_servers_reason(argo, argo_schema):
    def schema_lint(doc):
        try:
            argo_schema.validate(doc)
        except Exception as exc:
            return f"workflow invalid: {str(exc).splitlines()[0]}"
        return "" if doc["spec"]["templates"] else "spec.templates: required"

    argo.lint = schema_lint
    engine = _engine(argo)
    engine.lint(SPEC)
    req = argo.requests[-1]
    assert (req.method, req.path) == ("POST", "/api/v1/workflows/ml/lint")
    assert req.body["namespace"] == "ml"
    assert {t["name"] for t in req.body["workflow"]["spec"]["templates"]} >= {
        "rollout",
        "exit-handler",
        "approval",
    }
    assert argo.workflows == {}  # linting creates nothing
    argo.lint = lambda doc: "templates.analyze-5: image is required"
    with pytest.raises(ArgoError, match=r"lint workflow: .*400.*image is required"):
        engine.lint(SPEC)
