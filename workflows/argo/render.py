"""The rollout DAG as Argo resources, built with Hera.

Every container runs `canaryflow workflow step <step> --input <json>` from the canaryflow image, i.e.
the same step functions the local runner calls; the YAML only wires them together. The template is
per (policy, environment) because the policy fixes the number of traffic steps and whether the
approval gate exists; the rollout's model and versions are Workflow parameters.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hera.workflows import (
    DAG,
    Artifact,
    Container,
    Env,
    Parameter,
    Step,
    Steps,
    Suspend,
    Task,
    Workflow,
    WorkflowTemplate,
    models,
)
from hera.workflows.models import (
    ArchiveStrategy,
    Backoff,
    ConfigMapEnvSource,
    EnvFromSource,
    LabelValueFrom,
    NoneStrategy,
    RetryStrategy,
    SecretEnvSource,
    ValueFrom,
    WorkflowMetadata,
    WorkflowTemplateRef,
)

from canaryflow.kernel.types import RolloutSpec
from policies.model import Policy
from workflows.dag import DagNode, RetryPolicy, RolloutDag, build_rollout_dag, workflow_name
from workflows.steps.base import EXIT_ERROR
from workflows.workflow_settings import WorkflowSettings

OUTPUTS_DIR = "/tmp/outputs"
REPORT_FILE = f"{OUTPUTS_DIR}/report.md"
ENTRYPOINT = "rollout"
EXIT_HANDLER = "exit-handler"
LABEL_MODEL = "canaryflow.io/model"
LABEL_ROLLOUT = "canaryflow.io/rollout-id"
LABEL_POLICY = "canaryflow.io/policy"
TITLE = "workflows.argoproj.io/title"
DESCRIPTION = "workflows.argoproj.io/description"
DISPLAY_NAME = "workflows.argoproj.io/display-name"

# Workflow parameter name -> RolloutSpec field.
PARAMETERS = {
    "model": "model",
    "baseline-version": "baseline_version",
    "canary-version": "canary_version",
    "policy": "policy",
    "environment": "environment",
    "rollout-id": "rollout_id",
}


def _k8s_name(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return cleaned[:40].strip("-") or "default"


def template_name(policy: Policy, environment: str) -> str:
    return f"canaryflow-rollout-{_k8s_name(policy.name)}-{_k8s_name(environment)}"


def _step_args(node: DagNode, reason: str = "") -> list[str]:
    """`canaryflow workflow step` arguments: Argo fills the `{{...}}` placeholders.

    Workflow parameters are validated names and numbers, safe inside the JSON of `--input`; upstream
    outputs (a verdict is JSON itself) and the reason travel as arguments of their own, unquoted.
    An upstream output reaches the container as the template's own input parameter: Argo resolves
    `tasks.*` only in the DAG task's fields, which pass it on as `arguments` (see `_task`).
    """
    spec = {field: f"{{{{workflow.parameters.{param}}}}}" for param, field in PARAMETERS.items()}
    payload = json.dumps({"spec": spec, "params": dict(node.params)}, sort_keys=True)
    args = ["workflow", "step", node.step, "--input", payload, "--outputs-dir", OUTPUTS_DIR]
    for key in sorted(node.inputs_from):
        args += ["--upstream", f"{key}={{{{inputs.parameters.{key}}}}}"]
    if reason:
        # Argo's failed nodes (name, phase, message) as JSON: the rollback records which step failed.
        args += ["--reason", reason, "--failures", "{{workflow.failures}}"]
    return args


def _retry(policy: RetryPolicy | None) -> RetryStrategy | None:
    if policy is None:
        return None
    return RetryStrategy(
        limit=str(policy.limit),
        retry_policy="Always",
        # A step that decided "failed" (exit 1) is final; errors (exit 3, pod errors) are retried.
        expression=f'lastRetry.status == "Error" or asInt(lastRetry.exitCode) == {EXIT_ERROR}',
        backoff=Backoff(
            duration=f"{policy.backoff_s:g}s", factor=str(policy.factor), cap=f"{policy.max_backoff_s:g}s"
        ),
    )


def _container(node: DagNode, settings: WorkflowSettings, reason: str = "") -> Container:
    args = _step_args(node, reason)
    if node.kind in ("wait", "analyze"):
        args += ["--poll-interval", f"{settings.poll_interval_s:g}"]
    out_params = [
        Parameter(name=name, value_from=ValueFrom(path=f"{OUTPUTS_DIR}/{name}", default=""))
        for name in node.outputs
    ]
    artifacts = (
        [
            Artifact(
                name="report",
                path=REPORT_FILE,
                optional=True,
                archive=ArchiveStrategy(none=NoneStrategy()),
            )
        ]
        if node.kind == "analyze"
        else []
    )
    return Container(
        name=node.id,
        inputs=[Parameter(name=key) for key in sorted(node.inputs_from)] or None,
        image=settings.image,
        image_pull_policy=settings.image_pull_policy,
        command=["canaryflow"],
        args=args,
        env=[Env(name="PYTHONUNBUFFERED", value="1")],
        env_from=[
            EnvFromSource(config_map_ref=ConfigMapEnvSource(name=settings.config_map, optional=True)),
            EnvFromSource(secret_ref=SecretEnvSource(name=settings.secret, optional=True)),
        ],
        outputs=[*out_params, *artifacts],
        retry_strategy=_retry(node.retry),
    )


def _task(node: DagNode) -> Task:
    """The DAG task of a node: where `tasks.<node>.outputs` are in scope, handed on as arguments."""
    arguments = [
        Parameter(name=key, value=f"{{{{tasks.{ref.node}.outputs.parameters.{ref.output}}}}}")
        for key, ref in sorted(node.inputs_from.items())
    ]
    return Task(
        name=node.id,
        template=node.id,
        depends=" && ".join(node.depends) or None,
        arguments=arguments or None,
    )


def _templates(dag: RolloutDag, settings: WorkflowSettings) -> list[Any]:
    templates: list[Any] = []
    tasks: list[Task | models.DAGTask] = []
    for node in dag.nodes:
        if node.kind == "suspend":
            templates.append(Suspend(name=node.id))
        else:
            templates.append(_container(node, settings))
        tasks.append(_task(node))
    templates.append(_container(dag.exit_node, settings, reason="workflow {{workflow.status}}"))
    rollback = Step(name=dag.exit_node.id, template=dag.exit_node.id, when="{{workflow.status}} != Succeeded")
    return [DAG(name=ENTRYPOINT, tasks=tasks), Steps(name=EXIT_HANDLER, sub_steps=[rollback]), *templates]


def _spec_parameters(policy_ref: str, environment: str) -> list[Parameter]:
    return [
        Parameter(name="model", description="registered model name"),
        Parameter(name="baseline-version", description="registry version serving today"),
        Parameter(name="canary-version", description="registry version being rolled out"),
        # What the step pods load: a shipped policy name, or a file path present in their image/mounts.
        Parameter(name="policy", value=policy_ref, enum=[policy_ref]),
        # The template's DAG (approval gate or not) was rendered for this environment only.
        Parameter(name="environment", value=environment, enum=[environment]),
        Parameter(name="rollout-id", description="canaryflow rollout id"),
    ]


def _common(dag: RolloutDag, settings: WorkflowSettings) -> dict[str, Any]:
    return {
        "entrypoint": ENTRYPOINT,
        "on_exit": EXIT_HANDLER,
        "service_account_name": settings.service_account,
        "templates": _templates(dag, settings),
    }


ArgoResource = models.Workflow | models.WorkflowTemplate


def _with_display_names(resource: object, dag: RolloutDag) -> ArgoResource:
    """Hera 7.1 has no field for template-level annotations, which carry the UI's node names."""
    assert isinstance(resource, models.Workflow | models.WorkflowTemplate)
    if resource.spec.templates:
        for template in resource.spec.templates:
            if template.name is None:
                continue
            try:
                node = dag.node(template.name)
            except KeyError:
                continue
            template.annotations = {DISPLAY_NAME: node.display_name}
    return resource


def manifest(resource: ArgoResource) -> dict[str, Any]:
    """The resource as the JSON/YAML document Argo and kubectl take."""
    doc: dict[str, Any] = resource.model_dump(exclude_none=True, by_alias=True)
    return doc


def rollout_template(
    policy: Policy, environment: str, settings: WorkflowSettings, policy_ref: str | None = None
) -> models.WorkflowTemplate:
    """The WorkflowTemplate installed once per policy and environment; `policy_ref` is how rollouts
    name the policy (default: its name, i.e. a shipped policy)."""
    dag = build_rollout_dag(policy, environment)
    gate = "with a pull-request approval gate" if dag.gated else "without approval gate"
    template = WorkflowTemplate(
        name=template_name(policy, environment),
        namespace=settings.argo_namespace,
        labels={LABEL_POLICY: _k8s_name(policy.name)},
        annotations={
            TITLE: f"canaryflow rollout ({policy.name}, {environment})",
            DESCRIPTION: f"Canary steps {[s.weight for s in policy.steps]}%, {gate}.",
        },
        arguments=_spec_parameters(policy_ref or policy.name, environment),
        workflow_metadata=WorkflowMetadata(
            labels_from={
                LABEL_MODEL: LabelValueFrom(expression="workflow.parameters.model"),
                LABEL_ROLLOUT: LabelValueFrom(expression="workflow.parameters['rollout-id']"),
            }
        ),
        **_common(dag, settings),
    )
    built = _with_display_names(template.build(), dag)
    assert isinstance(built, models.WorkflowTemplate)
    return built


def _spec_arguments(spec: RolloutSpec) -> list[Parameter]:
    return [Parameter(name=param, value=str(getattr(spec, field))) for param, field in PARAMETERS.items()]


def _spec_metadata(spec: RolloutSpec) -> dict[str, Any]:
    return {
        "labels": {
            LABEL_MODEL: spec.model,
            LABEL_ROLLOUT: spec.rollout_id,
            LABEL_POLICY: _k8s_name(spec.policy),
        },
        "annotations": {
            TITLE: f"Rollout {spec.model} v{spec.baseline_version} → v{spec.canary_version}",
            DESCRIPTION: (
                f"Canary of {spec.model} version {spec.canary_version} against baseline "
                f"{spec.baseline_version} in {spec.environment}, policy {spec.policy} "
                f"(rollout {spec.rollout_id})."
            ),
        },
    }


def rollout_workflow(spec: RolloutSpec, policy: Policy, settings: WorkflowSettings) -> models.Workflow:
    """A self-contained Workflow for one rollout (`argo submit` it as it is)."""
    dag = build_rollout_dag(policy, spec.environment)
    workflow = Workflow(
        name=workflow_name(spec),
        namespace=settings.argo_namespace,
        arguments=_spec_arguments(spec),
        **_spec_metadata(spec),
        **_common(dag, settings),
    )
    built = _with_display_names(workflow.build(), dag)
    assert isinstance(built, models.Workflow)
    return built


def workflow_from_template(spec: RolloutSpec, policy: Policy, settings: WorkflowSettings) -> models.Workflow:
    """A Workflow that runs the installed WorkflowTemplate for one rollout (what `submit` creates)."""
    built = Workflow(
        name=workflow_name(spec),
        namespace=settings.argo_namespace,
        arguments=_spec_arguments(spec),
        workflow_template_ref=WorkflowTemplateRef(name=template_name(policy, spec.environment)),
        **_spec_metadata(spec),
    ).build()
    assert isinstance(built, models.Workflow)
    return built
