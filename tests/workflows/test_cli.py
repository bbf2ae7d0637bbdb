"""`canaryflow workflow`: what it prints is valid, bad usage exits 2 with a one-line reason."""

from __future__ import annotations

import contextlib
import json

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from canaryflow.app.cli import app
from tests.workflows.argo_server import ArgoServerThread

runner = CliRunner()
SPEC_ARGS = ["--model", "minilm", "--baseline-version", "1", "--canary-version", "2", "--rollout-id", "r-9"]


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, ["workflow", *args], env=env)


def test_render_prints_a_valid_workflow_template(argo_schema):
    result = invoke("render", "--policy", "default", "--namespace", "ml")
    assert result.exit_code == 0, result.stderr
    (doc,) = yaml.safe_load_all(result.stdout)
    assert doc["kind"] == "WorkflowTemplate" and doc["metadata"]["namespace"] == "ml"
    argo_schema.validate(doc)


def test_render_install_prints_rbac_and_template(argo_schema):
    result = invoke("render", "--install", "--image", "registry.local/canaryflow:dev")
    assert result.exit_code == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs][-1] == "WorkflowTemplate"
    for doc in docs[:-1]:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    argo_schema.validate(docs[-1])
    assert docs[-1]["spec"]["templates"][2]["container"]["image"] == "registry.local/canaryflow:dev"


def test_render_with_a_rollout_prints_a_workflow_to_submit(argo_schema):
    result = invoke("render", *SPEC_ARGS)
    assert result.exit_code == 0, result.stderr
    (doc,) = yaml.safe_load_all(result.stdout)
    assert doc["kind"] == "Workflow" and doc["metadata"]["name"] == "canaryflow-r-9"
    argo_schema.validate(doc)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["render", "--model", "minilm"], "--baseline-version"),
        (["render", *SPEC_ARGS[:-1], "Not_A_Name"], "rollout_id"),
        (["render", "--policy", "no-such-policy"], "--policy"),
        (["step", "nope", "--input", "{}"], "not a step"),
        (["step", "render", "--input", "{not json"], "--input"),
        (["step", "render", "--input", json.dumps({"spec": {"model": "m"}})], "spec."),
        (["stop", "x", "--reason", "r", "--engine", "local"], "--db"),
    ],
)
def test_bad_usage_exits_2_with_one_line_reason(args, reason):
    result = invoke(*args)
    assert result.exit_code == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], result.stderr


def test_submit_creates_the_workflow_on_the_argo_server(tmp_path):
    with ArgoServerThread("tok") as argo:
        env = {
            "CANARYFLOW_WORKFLOWS_ARGO_HOST": argo.url,
            "CANARYFLOW_WORKFLOWS_ARGO_NAMESPACE": "ml",
            "CANARYFLOW_WORKFLOWS_ARGO_TOKEN_FILE": str(tmp_path / "token"),
        }
        (tmp_path / "token").write_text("tok\n")
        result = invoke("submit", *SPEC_ARGS, "--install-template", env=env)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.split() == ["canaryflow-r-9", f"{argo.url}/workflows/ml/canaryflow-r-9"]
        assert [(r.method, r.path) for r in argo.requests] == [
            ("POST", "/api/v1/workflow-templates/ml"),
            ("POST", "/api/v1/workflows/ml"),
        ]
        assert all(r.headers["Authorization"] == "Bearer tok" for r in argo.requests)
        linted = invoke("lint", *SPEC_ARGS, env=env)
        assert linted.exit_code == 0 and linted.stdout.strip() == "canaryflow-r-9: valid"
        assert (argo.requests[-1].method, argo.requests[-1].path) == ("POST", "/api/v1/workflows/ml/lint")
        status = invoke("status", "canaryflow-r-9", env=env)
        assert status.exit_code == 0 and status.stdout.startswith("canaryflow-r-9  Pending")
        bad = invoke(
            "submit",
            *SPEC_ARGS,
            env={
                **env,
                "CANARYFLOW_WORKFLOWS_ARGO_TOKEN_FILE": "",
                "CANARYFLOW_WORKFLOWS_ARGO_TOKEN": "wrong",
            },
        )
        assert bad.exit_code == 1 and "401" in bad.stderr


def test_a_token_path_is_read_on_every_call_as_the_kubelet_rotates_it(tmp_path):
    """The pod's projected token is replaced in place before it expires: one engine, each call reading
    the file, carries the new token (a token read once at start would lapse within the hour)."""
    from hera.exceptions import HeraException

    from workflows.argo.argo_client import ArgoError, service_from_settings
    from workflows.workflow_settings import WorkflowSettings

    token = tmp_path / "token"
    with ArgoServerThread("first") as argo:
        settings = WorkflowSettings(argo_host=argo.url, argo_namespace="ml", argo_token_path=str(token))
        service = service_from_settings(settings)

        def get() -> None:
            with contextlib.suppress(HeraException):  # no such workflow: the call is what counts
                service.get_workflow(name="none", namespace="ml")

        token.write_text("first\n")
        get()
        token.write_text("second\n")
        argo.token = "second"
        get()
        assert [r.headers["Authorization"] for r in argo.requests] == ["Bearer first", "Bearer second"]
        token.unlink()
        with pytest.raises(ArgoError, match=r"argo_token_path: .*cannot read Argo token"):
            service.get_workflow(name="none", namespace="ml")
