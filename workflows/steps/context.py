"""The ports the step functions act through, wired once.

The composition root (`canaryflow.app.wiring.build_step_context`) builds it from the components'
settings for the container entry point and the controller's local runner; tests construct it directly
with real adapters pointed at local servers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from canaryflow.adapters.metrics import MetricsSource
from canaryflow.kernel.ports import ApprovalGate, CanaryReadiness, GitOpsRepo, LiveTraffic, Registry
from canaryflow.kernel.types import RolloutSpec
from gitops.gitops_settings import TrafficMode
from gitops.history import AuditEntry
from gitops.model import Rendering, RenderRequest
from policies.model import Policy
from workflows.steps.analysis_cache import AnalysisCache

ManifestCheck = Callable[[RenderRequest], Rendering]
"""Renders and validates a traffic state's manifests (raises on an invalid document)."""


class AuditLog(Protocol):
    """The GitOps history: finds a step's commit when it was already made (a step run again after a
    crash commits nothing, and reports the sha of the commit it made before)."""

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
    live_traffic: LiveTraffic | None = None
    approval: ApprovalGate | None = None
    history: AuditLog | None = None
    aliases: WorkflowAliases = WorkflowAliases()
    # Whether each step reads the rollout's directives (promote-now) from the registry before every
    # call: an Argo pod learns of a promote-now only so. The controller's local runner is told
    # directly (`skip_analysis`) and leaves the read out: one registry request per rollout per look.
    directives: bool = True
    # The live analysis steps' looks read and judged so far: each tick reads and judges only its new
    # looks (a cache: a fresh one reads them all back from Prometheus).
    analyses: AnalysisCache = field(default_factory=AnalysisCache)
