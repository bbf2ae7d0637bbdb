"""The composition root: builds every adapter from settings, for each process canaryflow runs.

The only place that reads settings from the environment and names concrete adapters: the controller
service (`canaryflow controller serve`), the step context of a workflow step (`canaryflow workflow
step`, the Argo container entry point) and the local runner the controller drives. Everything below
takes its settings as arguments. The local runner shares the controller's database file (its own
tables), so one file holds the whole state of the service.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from canaryflow.adapters.metrics.factory import MetricsSettings, metrics_source_from_settings
from canaryflow.adapters.notify import NotificationSettings, notifier_from_settings
from canaryflow.adapters.predictions import read_records, reader_for
from canaryflow.adapters.readiness.factory import readiness_from_settings
from canaryflow.adapters.readiness.settings import KubernetesReadinessSettings
from canaryflow.adapters.registry.factory import registry_from_settings
from canaryflow.kernel.contracts.drift import drift_notice
from canaryflow.kernel.contracts.traffic import TrafficMode
from canaryflow.kernel.ports import ApprovalGate, LiveTraffic, Notifier, Registry, WorkflowEngine
from canaryflow.kernel.types import RolloutSpec
from controller import faults
from controller.drift import ChampionSource, DriftMonitor
from controller.drift_action import DriftActions, DriftResponder
from controller.drift_reference import ReferenceShelf
from controller.notice_outbox import NoticeOutbox
from controller.rollout.store import RolloutStore
from controller.service import ControllerService
from controller.settings import ControllerSettings
from gitops.factory import approval_from_settings, git_repo_from_settings, traffic_mode_from_policy
from gitops.git import GitRepo
from gitops.settings import GitOpsSettings
from policies import load_policy
from policies.drift import load_drift_policy
from workflows.settings import WorkflowSettings
from workflows.steps import StepContext
from workflows.steps.release import StepRollback


def build_step_context(
    controller: ControllerSettings | None = None,
    gitops_settings: GitOpsSettings | None = None,
    metrics_settings: MetricsSettings | None = None,
) -> StepContext:
    """The ports a step acts through, from CANARYFLOW_* settings (gitops, metrics, controller sections),
    as a step pod or the controller's local runner has them."""
    controller = controller or ControllerSettings()
    gitops_settings = gitops_settings or GitOpsSettings()
    if not controller.registry_tracking_uri:
        raise ValueError("registry_tracking_uri: not set (CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI)")
    repo = git_repo_from_settings(gitops_settings, version_source=_version_source(controller))
    mode_for = traffic_mode_from_policy()
    return StepContext(
        gitops=repo,
        registry=registry_from_settings(controller.registry_backend, controller.registry_tracking_uri),
        metrics=metrics_source_from_settings(metrics_settings or MetricsSettings()),
        policy_for=load_policy,
        check_manifests=repo.render_checked,
        traffic_mode_for=mode_for,
        readiness=readiness_from_settings(controller.kubernetes, controller.inference_url),
        live_traffic=live_traffic_from_settings(controller.kubernetes, mode_for),
        approval=build_approval_gate(gitops_settings, repo),
    )


def live_traffic_from_settings(
    kubernetes: KubernetesReadinessSettings | None, mode_for: Callable[[RolloutSpec], TrafficMode]
) -> LiveTraffic | None:
    """Where a cluster is configured, wait-ready also reads the live split back through the rollout's
    traffic router (in the readiness settings' namespace) and waits until it is the committed one."""
    if kubernetes is None:
        return None
    from canaryflow.adapters.readiness.kubernetes import api_client
    from gitops.traffic.cluster import KubernetesObjects
    from gitops.traffic.live import RouterTraffic

    return RouterTraffic(KubernetesObjects(api_client(kubernetes)), kubernetes.namespace, mode_for)


def build_engine(
    workflow_settings: WorkflowSettings, db_path: Path | None, controller: ControllerSettings | None = None
) -> WorkflowEngine:
    """The engine `workflows.engine` names: Argo, or the local runner keeping its state in `db_path`."""
    if workflow_settings.engine == "argo":
        from workflows.argo.engine import ArgoEngine

        return ArgoEngine(workflow_settings, load_policy)
    from workflows.local.runner import LocalRunner
    from workflows.steps import step_runner

    if db_path is None:
        raise ValueError("db: the local runner needs its database file")

    context = build_step_context(controller)
    if faults.armed():
        context.gitops = faults.CrashAfterPush(context.gitops)
    return LocalRunner(db_path, step_runner(context), load_policy, settings=workflow_settings)


def build_approval_gate(
    gitops_settings: GitOpsSettings | None = None, repo: GitRepo | None = None
) -> ApprovalGate | None:
    """The pull-request gate where a GitHub repository is configured; with `repo`, a request pushes
    the promotion commit to its branch first (the steps' gate), without it the controller's reader."""
    gitops_settings = gitops_settings or GitOpsSettings()
    return approval_from_settings(gitops_settings, repo) if gitops_settings.github_repo else None


def bound_mlflow_calls(timeout_s: float) -> None:
    """MLflow's client retries a failed call 7 times with doubling backoff, 120 s each by default:
    minutes in which a reconcile worker is stuck. One retry and `timeout_s` per call make an outage a
    waiting reason within seconds; an operator's own MLFLOW_HTTP_* settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(timeout_s))))


def build_drift_monitor(
    settings: ControllerSettings,
    store: RolloutStore,
    registry: Registry | None,
    notifier: Notifier | None = None,
) -> DriftMonitor | None:
    """The champion drift monitor when `controller.drift.enabled`; raises ValueError on a bad policy.

    Under `on_drift: rollback` it gets a responder that rolls back through the rollback step, with the
    ports the workflow steps use (the gitops and registry settings): a policy that opts in without
    them is refused at start, not at the first drift."""
    drift = settings.drift
    if not drift.enabled:
        return None
    policy = load_drift_policy(drift.policy)
    responder = None
    if policy.on_drift == "rollback":
        try:
            rollback = StepRollback(build_step_context(settings))
        except ValueError as exc:
            raise ValueError(
                f"on_drift: rollback needs the steps' gitops and registry settings: {exc}"
            ) from exc
        responder = DriftResponder(DriftActions(settings.db_path), store, rollback, notifier=notifier)
    undone = responder.actions.rolled_back if responder is not None else None
    champions = ChampionSource(store, registry, drift.models, drift.champion_alias, rolled_back=undone)
    return DriftMonitor(
        policy,
        reader_for(drift.backend, drift.location),
        champions,
        registry=registry if drift.tag_registry else None,
        reference_files=drift.reference_files,
        read_reference_file=read_records,
        responder=responder,
        shelf=ReferenceShelf.beside(settings.db_path),
    )


def notify_outbox_path(db_path: Path) -> Path:
    """The notifier's outbox, beside the store (`canaryflow-controller.db` ->
    `canaryflow-controller-outbox.db`): its own file, so its writes never wait on the reconcile loop's."""
    return db_path.with_name(f"{db_path.stem}-outbox{db_path.suffix or '.db'}")


def build_service(
    settings: ControllerSettings, notification_settings: NotificationSettings | None = None
) -> ControllerService:
    bound_mlflow_calls(settings.dependency_timeout_s)
    registry: Registry | None = None
    if settings.registry_tracking_uri:
        registry = registry_from_settings(settings.registry_backend, settings.registry_tracking_uri)
    store = RolloutStore(settings.db_path)
    notify = notification_settings or NotificationSettings()
    notifier = notifier_from_settings(notify, partial(NoticeOutbox, notify_outbox_path(settings.db_path)))
    drift = build_drift_monitor(settings, store, registry, notifier)
    if drift is not None and notifier is not None:  # drift events go out as notices, off the monitor's thread
        send = notifier.notify
        drift.listeners.append(lambda event: send(drift_notice(event)))
    return ControllerService(
        settings,
        store,
        build_engine(WorkflowSettings(), settings.db_path, settings),
        registry,
        approval_gate=build_approval_gate(),
        notifier=notifier,
        link_templates=notify.links,
        drift=drift,
    )


def version_sources() -> Callable[[str, str], str] | None:
    """Resolves a registered version's artifact source through the controller's registry (MLflow), for
    rendering servers that download artifacts; None where no registry is configured."""
    return _version_source(ControllerSettings())


def _version_source(controller: ControllerSettings) -> Callable[[str, str], str] | None:
    if not controller.registry_tracking_uri or controller.registry_backend != "mlflow":
        return None
    from canaryflow.adapters.registry.mlflow import MlflowRegistry

    return MlflowRegistry(controller.registry_tracking_uri).version_source
