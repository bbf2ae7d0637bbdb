"""Builds the controller from settings: store, registry, workflow engine, approval gate.

The composition root of `canaryflow controller serve`: the only place that names concrete adapters.
The engine is the one `CANARYFLOW_WORKFLOWS_ENGINE` selects; the local runner shares the controller's
database file (its own tables), so one file holds the whole state of the service.
"""

from __future__ import annotations

from canaryflow.core.ports import ApprovalGate, Registry, WorkflowEngine
from controller import faults
from controller.rollout.store import RolloutStore
from controller.service import ControllerService
from controller.settings import ControllerSettings


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
    return LocalRunner(settings.db_path, step_runner(context), load_policy)


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
