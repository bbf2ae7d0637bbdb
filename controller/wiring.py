"""Builds the controller from settings: store, registry, workflow engine, approval gate.

The composition root of `canaryflow controller serve`: the only place that names concrete adapters.
The engine is the one `CANARYFLOW_WORKFLOWS_ENGINE` selects; the local runner shares the controller's
database file (its own tables), so one file holds the whole state of the service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from canaryflow.core.ports import ApprovalGate, Registry, WorkflowEngine
from controller import faults
from controller.rollout.store import RolloutStore
from controller.service import ControllerService
from controller.settings import ControllerSettings

if TYPE_CHECKING:
    from workflows.dag import DagNode
    from workflows.steps.base import StepInput, StepOutcome

    StepRunner = Callable[[DagNode, StepInput], StepOutcome]


def build_engine(settings: ControllerSettings) -> WorkflowEngine:
    from policies import load_policy
    from workflows.settings import WorkflowSettings

    workflow_settings = WorkflowSettings()
    if workflow_settings.engine == "argo":
        from workflows.argo.engine import ArgoEngine

        return ArgoEngine(workflow_settings, load_policy)
    from workflows.local.runner import LocalRunner
    from workflows.steps import StepContext, step_runner

    context = StepContext.from_settings(settings)
    if faults.armed():
        context.gitops = faults.CrashAfterPush(context.gitops)
    return LocalRunner(settings.db_path, waiting_on_metrics_errors(step_runner(context)), load_policy)


def waiting_on_metrics_errors(run_step: StepRunner) -> StepRunner:
    """An analysis that cannot read its metrics waits (and says why) instead of failing the step: a
    Prometheus outage must neither promote nor roll back a canary; `max_duration_s` bounds the wait."""
    from controller.metrics import MetricsError
    from workflows.steps.base import StepOutcome

    def run(node: DagNode, step_input: StepInput) -> StepOutcome:
        try:
            return run_step(node, step_input)
        except MetricsError as exc:
            if node.kind != "analyze":
                raise
            return StepOutcome(state="running", message=f"waiting: metrics unavailable ({exc})")

    return run


def build_approval_gate() -> ApprovalGate | None:
    from gitops.factory import approval_from_settings
    from gitops.settings import GitOpsSettings

    gitops_settings = GitOpsSettings()
    return approval_from_settings(gitops_settings) if gitops_settings.github_repo else None


def build_service(settings: ControllerSettings) -> ControllerService:
    registry: Registry | None = None
    if settings.registry_tracking_uri:
        from controller.registry import MlflowRegistry

        registry = MlflowRegistry(settings.registry_tracking_uri)
    store = RolloutStore(settings.db_path)
    return ControllerService(
        settings, store, build_engine(settings), registry, approval_gate=build_approval_gate()
    )
