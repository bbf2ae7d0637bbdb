"""The ports the step functions act through, wired once.

`StepContext.from_settings()` builds the real adapters from the components' settings (what the
container entry point and the controller's local runner use); tests construct it directly with real
adapters pointed at local servers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from canaryflow.core.ports import ApprovalGate, CanaryReadiness, GitOpsRepo, Registry
from canaryflow.core.types import RolloutSpec
from controller.metrics import MetricsSource
from gitops.git import GitRepo
from gitops.history import AuditEntry
from gitops.model import Rendering, RenderRequest
from gitops.render import render
from gitops.settings import TrafficMode
from policies.model import Policy

if TYPE_CHECKING:
    from controller.settings import ControllerSettings

ManifestCheck = Callable[[RenderRequest], Rendering]
"""Renders and validates a traffic state's manifests (raises on an invalid document)."""


def repo_manifest_check(repo: GitRepo) -> ManifestCheck:
    """The same render and validation the repo applies before it commits, without committing."""

    def check(request: RenderRequest) -> Rendering:
        rendering = render(request, repo.options)
        repo.validator.validate_rendering(rendering)
        return rendering

    return check


@runtime_checkable
class AuditLog(Protocol):
    """The GitOps history, where a repo offers it: finds a step's commit when it was already made."""

    def audit_log(self, model: str, environment: str) -> list[AuditEntry]: ...


@dataclass(frozen=True)
class WorkflowAliases:
    champion: str = "champion"
    challenger: str = "challenger"


@dataclass
class StepContext:
    gitops: GitOpsRepo
    registry: Registry
    metrics: MetricsSource
    policy_for: Callable[[str], Policy]
    check_manifests: ManifestCheck
    traffic_mode_for: Callable[[RolloutSpec], TrafficMode]
    readiness: CanaryReadiness | None = None
    approval: ApprovalGate | None = None
    aliases: WorkflowAliases = WorkflowAliases()

    @classmethod
    def from_settings(cls, controller: ControllerSettings | None = None) -> StepContext:
        """Everything from CANARYFLOW_* settings (gitops, metrics, controller sections), as a step pod
        or the controller's local runner has them."""
        from controller.metrics.factory import MetricsSettings, metrics_source_from_settings
        from controller.readiness.factory import readiness_from_settings
        from controller.registry import MlflowRegistry
        from controller.settings import ControllerSettings
        from gitops.factory import approval_from_settings, git_repo_from_settings, traffic_mode_from_policy
        from gitops.settings import GitOpsSettings
        from policies import load_policy

        controller = controller or ControllerSettings()
        gitops_settings = GitOpsSettings()
        repo = git_repo_from_settings(gitops_settings)
        if not controller.registry_tracking_uri:
            raise ValueError("registry_tracking_uri: not set (CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI)")
        approval = approval_from_settings(gitops_settings, repo) if gitops_settings.github_repo else None
        return cls(
            gitops=repo,
            registry=MlflowRegistry(controller.registry_tracking_uri),
            metrics=metrics_source_from_settings(MetricsSettings()),
            policy_for=load_policy,
            check_manifests=repo_manifest_check(repo),
            traffic_mode_for=traffic_mode_from_policy(),
            readiness=readiness_from_settings(controller),
            approval=approval,
        )
