"""Argo's variable scope on every rendered Workflow/WorkflowTemplate, as `canaryflow workflow render`
prints it: every shipped policy, with and without the approval gate, with `--install` and as a
Workflow; plus the checker's own refusals (so that a green run means something)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from canaryflow.app.cli import app
from policies import SHIPPED_DIR
from tests.workflows.conftest import short_policy
from workflows.argo.render import manifest, rollout_template
from workflows.argo.scope import check_all, check_scope, depends_names
from workflows.workflow_settings import WorkflowSettings

SHIPPED = sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))
ROLLOUT = ["--model", "minilm", "--baseline-version", "1", "--canary-version", "2", "--rollout-id", "r-7"]
runner = CliRunner()


def _policy_ref(name: str, gated: bool, tmp_path: Path) -> str:
    """A shipped policy by name, or a copy of it that requires a pull-request approval."""
    if not gated:
        return name
    data = yaml.safe_load((SHIPPED_DIR / f"{name}.yaml").read_text())
    data["approval"] = {**data.get("approval", {}), "required": True, "environments": ["production"]}
    path = tmp_path / f"{name}-gated.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _render(*args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["workflow", "render", *args])
    assert result.exit_code == 0, result.output
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
@pytest.mark.parametrize("policy", SHIPPED)
def test_every_shipped_policy_renders_in_scope_and_schema_valid(policy, gated, tmp_path, argo_schema):
    ref = _policy_ref(policy, gated, tmp_path)
    outputs = {
        "template": _render("--policy", ref),
        "install": _render("--policy", ref, "--install"),
        "workflow": _render("--policy", ref, *ROLLOUT),
        "workflow --install": _render("--policy", ref, *ROLLOUT, "--install"),
        "staging": _render("--policy", ref, "--environment", "staging"),
    }
    argo_docs = 0
    for what, docs in outputs.items():
        assert check_all(docs) == [], what
        for doc in docs:
            if doc["kind"] in ("Workflow", "WorkflowTemplate"):
                argo_schema.validate(doc)
                argo_docs += 1
    assert argo_docs == len(outputs)
    template = outputs["template"][0]
    names = {t["name"] for t in template["spec"]["templates"]}
    assert ("approval" in names) == gated  # the gated variant really has the gate (and its inputs)


def _gated_template() -> dict[str, Any]:
    return manifest(rollout_template(short_policy(5, 50, approval=True), "production", WorkflowSettings()))


def _template(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in doc["spec"]["templates"] if t["name"] == name)


def _task(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in _template(doc, "rollout")["dag"]["tasks"] if t["name"] == name)


def _reasons(doc: dict[str, Any]) -> list[str]:
    return [str(p) for p in check_scope(doc)]


def test_a_task_output_inside_a_leaf_template_is_refused():
    """The form Argo refuses with "failed to resolve": what the gated render used to emit."""
    doc = _gated_template()
    promote = _template(doc, "promote")
    args = promote["container"]["args"]
    args[args.index("approval_id={{inputs.parameters.approval_id}}")] = (
        "approval_id={{tasks.request-approval.outputs.parameters.approval_id}}"
    )
    (reason,) = _reasons(doc)
    assert reason.startswith("templates.promote: {{tasks.request-approval.outputs.parameters.approval_id}}")
    assert "inputs.parameters" in reason


def test_workflow_status_only_in_the_exit_handler():
    doc = _gated_template()
    _template(doc, "analyze-5")["container"]["args"].append("{{workflow.status}}")
    assert _reasons(doc) == [
        "templates.analyze-5: {{workflow.status}}: resolves only in templates called from spec.onExit"
    ]
    rollback_args = " ".join(_template(_gated_template(), "rollback")["container"]["args"])
    assert "{{workflow.status}}" in rollback_args  # the same variable is fine there


def test_inputs_must_be_declared_passed_and_only_declared_ones_passed():
    undeclared = _gated_template()
    _template(undeclared, "promote").pop("inputs")
    reasons = _reasons(undeclared)
    assert "templates.promote: {{inputs.parameters.approval_id}}: the template declares no such input" in (
        " ".join(reasons)
    )
    assert any("passes 'approval_id', which template 'promote' does not declare" in r for r in reasons)

    not_passed = _gated_template()
    _task(not_passed, "promote").pop("arguments")
    assert _reasons(not_passed) == [
        f"templates.rollout.dag.tasks.promote: inputs.parameters.{name} of template 'promote' is not passed"
        for name in ("approval_head_sha", "approval_id")
    ]


def test_task_fields_see_only_their_ancestors_outputs():
    doc = _gated_template()
    task = _task(doc, "request-approval")
    task["arguments"]["parameters"][0]["value"] = "{{tasks.promote.outputs.parameters.commit_sha}}"
    (reason,) = _reasons(doc)
    assert reason.startswith("templates.rollout.dag.tasks.request-approval: {{tasks.promote.outputs")
    ok = copy.deepcopy(_gated_template())
    _task(ok, "request-approval")["when"] = "{{tasks.analyze-50.outputs.parameters.verdict}} == promote"
    assert _reasons(ok) == []


def test_unknown_templates_dependencies_and_workflow_parameters_are_refused():
    doc = _gated_template()
    _task(doc, "promote")["depends"] = "approval && nope"
    _task(doc, "render")["template"] = "missing"
    _template(doc, "render")["container"]["args"].append("{{workflow.parameters.nope}}")
    reasons = " | ".join(_reasons(doc))
    assert "depends on 'nope', which is not a task of this DAG" in reasons
    assert "template 'missing' is not defined" in reasons
    assert "{{workflow.parameters.nope}}: not in scope here" in reasons


def test_depends_expressions():
    assert depends_names("a && (b.Succeeded || !c.Failed)") == {"a", "b", "c"}
    assert depends_names("") == set()
