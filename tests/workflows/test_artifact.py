"""The local runner runs the rendered Workflow: what it hands each step is what the container's
`canaryflow workflow step` would build from the same resolved args, and what Argo would refuse
(an unresolvable variable, args the CLI refuses, an input not passed) it refuses too."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from typer.testing import CliRunner

from canaryflow.app.cli import app
from canaryflow.kernel.types import RolloutSpec
from tests.workflows.conftest import short_policy
from workflows.argo.render import manifest, rollout_workflow
from workflows.local.artifact import ArtifactError, Task, WorkflowArtifact, resolve
from workflows.steps import STEPS
from workflows.steps.base import StepOutcome
from workflows.steps.command import describe_failures
from workflows.workflow_settings import WorkflowSettings

SPEC = RolloutSpec(rollout_id="r-9", model="minilm", baseline_version="3", canary_version="4", policy="fast")
FAILURES = '[{"displayName": "analyze-5", "phase": "Failed", "message": "p99 +40%"}]'


def _doc() -> dict[str, Any]:
    return manifest(rollout_workflow(SPEC, short_policy(5, 50, approval=True), WorkflowSettings()))


def _outputs(artifact: WorkflowArtifact) -> dict[str, dict[str, str]]:
    outputs: dict[str, dict[str, str]] = {}
    for task in artifact.tasks:
        names = [p["name"] for p in task.template.get("outputs", {}).get("parameters", [])]
        outputs[task.name] = {name: f"{task.name}:{name}" for name in names}
    return outputs


def test_every_task_gets_what_the_container_cli_would_build(monkeypatch: pytest.MonkeyPatch) -> None:
    artifact = WorkflowArtifact(_doc())
    outputs = _outputs(artifact)
    seen: list[Any] = []

    def capture(_ctx: object, step_input: Any) -> StepOutcome:
        seen.append(step_input)
        return StepOutcome(state="succeeded")

    monkeypatch.setattr("canaryflow.app.wiring.build_step_context", lambda: object())
    for name in list(STEPS):
        monkeypatch.setitem(STEPS, name, capture)
    tasks: list[tuple[Task, str | None]] = [(t, None) for t in artifact.tasks if t.kind != "suspend"]
    tasks += [(t, "Failed") for t in artifact.exit_tasks]
    for task, status in tasks:
        local = artifact.invocation(task, outputs, status, FAILURES if status else "null", started_at=1.0)
        args = [resolve(a, _leaf_scope(artifact, task, outputs, status), task.name) for a in _args(task)]
        result = CliRunner().invoke(app, [*args, "--outputs-dir", "/tmp/cf-artifact-test"])
        assert result.exit_code == 0, result.output
        container = seen.pop().model_copy(update={"started_at": 1.0})
        assert local.step_input == container, task.name
        assert local.node.step == args[2]
    promote = next(t for t in artifact.tasks if t.name == "promote")
    upstream = artifact.invocation(promote, outputs).step_input.upstream
    assert upstream == {  # through the task's arguments into the template's inputs
        "approval_head_sha": "request-approval:approval_head_sha",
        "approval_id": "request-approval:approval_id",
    }
    rollback = artifact.invocation(artifact.exit_tasks[0], outputs, "Failed", FAILURES).step_input
    assert rollback.reason == "workflow Failed: analyze-5 Failed: p99 +40%"
    assert rollback.spec == SPEC


def _args(task: Any) -> list[str]:
    return list(task.template["container"]["args"])


def _leaf_scope(artifact: WorkflowArtifact, task: Any, outputs: Any, status: str | None) -> dict[str, str]:
    """The scope of the container's args, built independently of `invocation` from the task's args."""
    scope = artifact.globals(status, FAILURES if status else "null")
    for name, value in task.arguments.items():
        ref = value.strip("{}").split(".")  # tasks.<T>.outputs.parameters.<P>
        scope[f"inputs.parameters.{name}"] = outputs[ref[1]][ref[4]]
    return scope


def test_what_argo_would_refuse_the_runner_refuses() -> None:
    leaf_refers_to_a_task = _doc()
    promote = next(t for t in leaf_refers_to_a_task["spec"]["templates"] if t["name"] == "promote")
    args = promote["container"]["args"]
    args[args.index("approval_id={{inputs.parameters.approval_id}}")] = (
        "approval_id={{tasks.request-approval.outputs.parameters.approval_id}}"
    )
    artifact = WorkflowArtifact(leaf_refers_to_a_task)
    task = next(t for t in artifact.tasks if t.name == "promote")
    with pytest.raises(ArtifactError, match="failed to resolve"):
        artifact.invocation(task, _outputs(artifact))

    unknown_option = _doc()
    render = next(t for t in unknown_option["spec"]["templates"] if t["name"] == "render")
    render["container"]["args"].append("--dry")
    artifact = WorkflowArtifact(unknown_option)
    with pytest.raises(ArtifactError, match=r"refuses its args.*--dry"):
        artifact.invocation(artifact.tasks[0], {})

    not_passed = copy.deepcopy(_doc())
    dag = next(t for t in not_passed["spec"]["templates"] if t["name"] == "rollout")
    next(t for t in dag["dag"]["tasks"] if t["name"] == "promote").pop("arguments")
    artifact = WorkflowArtifact(not_passed)
    with pytest.raises(ArtifactError, match=r"approval_(head_sha|id) is not passed"):
        artifact.invocation(next(t for t in artifact.tasks if t.name == "promote"), _outputs(artifact))


def test_exit_handler_when_and_failures_as_argo_writes_them() -> None:
    artifact = WorkflowArtifact(_doc())
    (rollback,) = artifact.exit_tasks
    assert artifact.runs(rollback, "Failed") and not artifact.runs(rollback, "Succeeded")
    raw = '[{"displayName":"analyze-5","phase":"Failed","message":"Error (exit code 1)"}]'
    quoted = json.dumps(raw)
    assert describe_failures(quoted) == "analyze-5 Failed: Error (exit code 1)"  # Argo >= 3.4 quotes it
    assert describe_failures("null") == "" and describe_failures("not json") == "not json"
