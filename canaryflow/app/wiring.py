"""The composition root: builds every adapter from settings, for each process canaryflow runs.

The only place that reads settings from the environment and names concrete adapters: the controller
service (`canaryflow controller serve`), the step context of a workflow step (`canaryflow workflow
step`, the Argo container entry point) and the local runner the controller drives. Everything below
takes its settings as arguments. The local runner shares the controller's database file (its own
tables), so one file holds the whole state of the service.

Each part is built once, here: the controller's metrics, reconciler, HTTP app and drift lock
(`assemble_controller`); the services below only start and stop what they are given. A capability
only some adapters have (the engine's workflow link, the GitHub gate's say on who may approve, the
notifier's outbox health, the git repo's history) is handed over by name where the concrete adapter
is known, never looked for at run time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

from canaryflow.adapters.database import Database, open_database
from canaryflow.adapters.metrics.factory import (
    MetricsSettings,
    batched_source_from_settings,
    metrics_source_from_settings,
)
from canaryflow.adapters.notify import NotificationSettings, Outbox, notifier_from_settings
from canaryflow.adapters.predictions import read_records, reader_for
from canaryflow.adapters.readiness.factory import readiness_from_settings
from canaryflow.adapters.readiness.readiness_settings import KubernetesReadinessSettings
from canaryflow.adapters.registry.factory import registry_from_settings
from canaryflow.kernel.contracts.drift import drift_notice
from canaryflow.kernel.contracts.serving_config import ServingConfig
from canaryflow.kernel.contracts.traffic import TrafficMode
from canaryflow.kernel.ports import (
    ApprovalGate,
    LiveTraffic,
    MetricsSource,
    Notifier,
    Registry,
    ReviewAuthority,
    WorkflowEngine,
)
from canaryflow.kernel.types import RolloutSpec
from controller import faults
from controller.actions import RolloutActions
from controller.api.api_context import ControllerContext
from controller.api.controller_app import create_app
from controller.console.routes import mount
from controller.controller_settings import ControllerSettings
from controller.drift_action import DriftActions, DriftResponder
from controller.drift_monitor import ChampionSource, DriftCollector, DriftMonitor
from controller.drift_reference import ReferenceShelf
from controller.leadership import (
    DatabaseLease,
    FencedGitOps,
    Leadership,
    LeaseElector,
    Solo,
    export_leadership,
)
from controller.notice_log import NoticeLog
from controller.notice_outbox import NoticeOutbox
from controller.observability import ControllerMetrics, NoticeOutboxCollector, NotifierHealth
from controller.policy_choice import PolicyChooser
from controller.reconcile import PolicyLoader, Reconciler, default_policy_loader
from controller.rollout.actions import ActionStore
from controller.rollout.store import RolloutStore
from controller.service import ControllerService, LoopWake
from controller.shared_outbox import SharedNoticeOutbox
from gitops.factory import approval_from_settings, git_repo_from_settings
from gitops.git import GitRepo
from gitops.gitops_settings import GitOpsSettings
from gitops.pullrequest import GitHubApproval
from policies import load_policy
from policies.drift_policy import load_drift_policy
from workflows.steps import StepContext
from workflows.steps.release import StepRollback
from workflows.workflow_settings import WorkflowSettings

if TYPE_CHECKING:
    from workflows.argo.argo_client import ArgoEngine
    from workflows.local.runner import LocalRunner


def build_step_context(
    controller: ControllerSettings | None = None,
    gitops_settings: GitOpsSettings | None = None,
    metrics_settings: MetricsSettings | None = None,
    *,
    crash_after_push: bool = False,
    leadership: Leadership | None = None,
    directives: bool = True,
) -> StepContext:
    """The ports a step acts through, from CANARYFLOW_* settings (gitops, metrics, controller sections),
    as a step pod or the controller's local runner has them. `crash_after_push`: the crash-and-restart
    tests' fault point between a pushed commit and its record (controller/faults.py). `leadership`:
    with replicas, every commit and push is fenced by it (a deposed leader's push never starts).
    `directives`: whether steps read the registry's promote-now before each call (a pod's steps
    must; the controller's local runner is told directly)."""
    controller = controller or ControllerSettings()
    gitops_settings = gitops_settings or GitOpsSettings()
    if not controller.registry_tracking_uri:
        raise ValueError("registry_tracking_uri: not set (CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI)")
    mode_for = traffic_mode_from_policy()
    repo = git_repo_from_settings(
        gitops_settings, mode_for, serving_from_policy(), _version_source(controller)
    )
    gitops = faults.CrashAfterPush(repo, repo.workdir) if crash_after_push else repo
    fenced = leadership.fenced if leadership is not None else None
    return StepContext(
        gitops=FencedGitOps(gitops, fenced) if fenced is not None else gitops,
        registry=registry_from_settings(controller.registry_backend, controller.registry_tracking_uri),
        metrics=metrics_source_from_settings(metrics_settings or MetricsSettings()),
        policy_for=load_policy,
        check_manifests=repo.render_checked,
        traffic_mode_for=mode_for,
        readiness=readiness_from_settings(controller.kubernetes, controller.inference_url),
        live_traffic=live_traffic_from_settings(controller.kubernetes, mode_for, controller.inference_url),
        approval=build_approval_gate(gitops_settings, repo, fenced),
        history=repo,
        directives=directives,
    )


def traffic_mode_from_policy() -> Callable[[RolloutSpec], TrafficMode]:
    """The traffic mode a rollout's policy names (a policy that cannot be loaded is an error): read
    here, on the application side, and handed to the GitOps repo as a function."""

    @lru_cache(maxsize=32)
    def mode_of(policy: str) -> TrafficMode:
        return load_policy(policy).traffic_mode

    return lambda spec: mode_of(spec.policy)


def serving_from_policy() -> Callable[[RolloutSpec], ServingConfig]:
    """The server a rollout's policy names for its versions (`serving`; canaryflow's own by default),
    read here like the traffic mode."""

    @lru_cache(maxsize=32)
    def serving_of(policy: str) -> ServingConfig:
        return load_policy(policy).serving

    return lambda spec: serving_of(spec.policy)


def live_traffic_from_settings(
    kubernetes: KubernetesReadinessSettings | None,
    mode_for: Callable[[RolloutSpec], TrafficMode],
    inference_url: str | None = None,
) -> LiveTraffic | None:
    """Where a cluster is configured, wait-ready also reads the live split back through the rollout's
    traffic router (in the readiness settings' namespace) and waits until it is the committed one;
    without one, from the serving front at `inference_url` (its routing gauge)."""
    if kubernetes is None:
        if inference_url:
            from canaryflow.adapters.readiness.server_routing import ServerRouting

            return ServerRouting(inference_url)
        return None
    from canaryflow.adapters.readiness.kubernetes import api_client
    from gitops.traffic.cluster import KubernetesObjects
    from gitops.traffic.live import RouterTraffic

    return RouterTraffic(KubernetesObjects(api_client(kubernetes)), kubernetes.namespace, mode_for)


def build_engine(
    workflow_settings: WorkflowSettings,
    db_path: Database | Path | None,
    controller: ControllerSettings | None = None,
    leadership: Leadership | None = None,
) -> ArgoEngine | LocalRunner:
    """The engine `workflows.engine` names: Argo, or the local runner keeping its state in `db_path`
    (a file, or the replicas' shared database). Both link a workflow to where an operator watches it
    (`link`), which the controller wires."""
    if workflow_settings.engine == "argo":
        from workflows.argo.argo_client import ArgoEngine

        return ArgoEngine(workflow_settings, load_policy)
    from workflows.local.runner import LocalRunner
    from workflows.steps import step_runner

    if db_path is None:
        raise ValueError("db: the local runner needs its database file")

    # Promote-now reaches the local runner directly (`skip_analysis`): no registry read per look.
    context = build_step_context(
        controller, crash_after_push=faults.armed(), leadership=leadership, directives=False
    )
    # Every rollout's analysis runs here: their looks are read together, off the reconcile thread.
    context.metrics = batched_source_from_settings(context.metrics, MetricsSettings())
    from canaryflow.adapters.metrics.batched import BatchedSource

    reader = context.metrics.close if isinstance(context.metrics, BatchedSource) else None
    return LocalRunner(
        db_path, step_runner(context), load_policy, settings=workflow_settings, on_close=reader
    )


def build_approval_gate(
    gitops_settings: GitOpsSettings | None = None,
    repo: GitRepo | None = None,
    fenced: Callable[[], AbstractContextManager[None]] | None = None,
) -> GitHubApproval | None:
    """The pull-request gate where a GitHub repository is configured; with `repo`, a request pushes
    the promotion commit to its branch first (the steps' gate; fenced with replicas), without it the
    controller's reader. The same object says who may approve (`ReviewAuthority`), for webhook
    reviews."""
    gitops_settings = gitops_settings or GitOpsSettings()
    return approval_from_settings(gitops_settings, repo, fenced) if gitops_settings.github_repo else None


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
    leadership: Leadership | None = None,
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
            rollback = StepRollback(build_step_context(settings, leadership=leadership))
        except ValueError as exc:
            raise ValueError(
                f"on_drift: rollback needs the steps' gitops and registry settings: {exc}"
            ) from exc
        responder = DriftResponder(
            DriftActions(state_of(settings, store)), store, rollback, notifier=notifier
        )
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


def state_of(settings: ControllerSettings, store: RolloutStore) -> Database | Path:
    """Where a further store keeps its tables: the replicas' shared database, opened once (its pool
    serves every store, and its fence guards them all), or the SQLite file, which each store opens."""
    return store.db if settings.database_url is not None else settings.db_path


def build_leadership(settings: ControllerSettings, store: RolloutStore) -> Leadership:
    """A lease in the shared database where there is one (several replicas, one leader); else one
    controller per SQLite file (`lock_database`), which always leads."""
    if settings.database_url is None:
        return Solo()
    if settings.shards > 1:
        if settings.leader_election != "database":
            raise ValueError("shards: sharding leases its shards in the database (leader_election: database)")
        from controller.sharding import ShardedLeadership

        return ShardedLeadership(
            store.db, settings.shards, ttl_s=settings.leader_ttl_s, renew_s=settings.leader_renew_s
        )
    name, ttl_s, renew_s = settings.leader_lease_name, settings.leader_ttl_s, settings.leader_renew_s
    if settings.leader_election == "kubernetes":
        from canaryflow.adapters.readiness.kubernetes import api_client
        from controller.k8s_lease import KubernetesLease

        # The cluster of the `kubernetes` settings, else the one the pod runs in (its service account).
        kube = settings.kubernetes or KubernetesReadinessSettings(in_cluster=True)
        api, namespace = api_client(kube), settings.leader_lease_namespace or kube.namespace
        return KubernetesLease(store.db, api, namespace, name=name, ttl_s=ttl_s, renew_s=renew_s)
    return DatabaseLease(store.db, name=name, ttl_s=ttl_s, renew_s=renew_s)


def build_service(
    settings: ControllerSettings, notification_settings: NotificationSettings | None = None
) -> ControllerService:
    """`canaryflow controller serve`: every adapter from settings, then `assemble_controller`."""
    bound_mlflow_calls(settings.dependency_timeout_s)
    registry: Registry | None = None
    if settings.registry_tracking_uri:
        registry = registry_from_settings(settings.registry_backend, settings.registry_tracking_uri)
    url = settings.database_url
    store = RolloutStore(open_database(url.get_secret_value()) if url is not None else settings.db_path)
    leadership = build_leadership(settings, store)
    notify = notification_settings or NotificationSettings()
    notice_log = NoticeLog(state_of(settings, store))  # what became of each notice, for the rollout's page
    # Replicas keep the notices they owe in the shared database, so one that dies leaves them to
    # another (controller/shared_outbox.py); one controller keeps them in a file beside its store.
    outbox: Callable[[], Outbox] = (
        partial(SharedNoticeOutbox, store.db, leadership.identity, orphan_after_s=settings.leader_ttl_s)
        if settings.database_url is not None
        else partial(NoticeOutbox, notify_outbox_path(settings.db_path))
    )
    notifier = notifier_from_settings(notify, outbox, on_settled=notice_log.record)
    fenced = leadership if settings.database_url is not None else None  # replicas: pushes fenced
    drift = build_drift_monitor(settings, store, registry, notifier, fenced)
    if drift is not None and notifier is not None:  # drift events go out as notices, off the monitor's thread
        send = notifier.notify
        drift.listeners.append(lambda event: send(drift_notice(event)))
    workflow_settings = WorkflowSettings()
    engine = build_engine(workflow_settings, state_of(settings, store), settings, fenced)
    gate = build_approval_gate()
    return assemble_controller(
        settings,
        store,
        engine,
        registry,
        workflow_link=engine.link,
        approval_gate=gate,
        reviewers=gate,
        notifier=notifier,
        outbox_health=notifier,
        link_templates=notify.links,
        drift=drift,
        notice_log=notice_log if notifier is not None else None,
        leadership=leadership,
        traffic=metrics_source_from_settings(MetricsSettings()),
        tuned_policies=workflow_settings.engine != "argo",
        closing=_closing(engine),
    )


def _closing(engine: ArgoEngine | LocalRunner) -> tuple[Callable[[], None], ...]:
    """What the service's clean stop ends of the engine: the local runner's steps' metrics reader."""
    from workflows.local.runner import LocalRunner

    return (engine.close,) if isinstance(engine, LocalRunner) else ()


def assemble_controller(
    settings: ControllerSettings,
    store: RolloutStore,
    engine: WorkflowEngine,
    registry: Registry | None,
    *,
    workflow_link: Callable[[str], str] | None = None,
    approval_gate: ApprovalGate | None = None,
    reviewers: ReviewAuthority | None = None,
    policy_loader: PolicyLoader = default_policy_loader,
    clock: Callable[[], float] = time.time,
    notifier: Notifier | None = None,
    outbox_health: NotifierHealth | None = None,
    link_templates: Mapping[str, str] | None = None,
    drift: DriftMonitor | None = None,
    notice_log: NoticeLog | None = None,
    leadership: Leadership | None = None,
    traffic: MetricsSource | None = None,
    tuned_policies: bool = True,
    closing: Sequence[Callable[[], None]] = (),
) -> ControllerService:
    """The controller's parts, each built once, joined: metrics, the reconciler, the HTTP app and
    the loop's wake-up, the drift monitor's collector and its lock against rollouts.

    The optional capabilities are passed, never sniffed: `workflow_link` (the engine's UI link),
    `reviewers` (who may approve a webhook review: the GitHub gate), `outbox_health` (the notifier's
    outbox, as metrics), `traffic` (where the champion's traffic is read for the forecast before a
    rollout starts and the thin-evidence switch; `tuned_policies`: whether the engine runs a policy
    with a tuned prior, which Argo's installed templates do not); `closing`: what the service's
    clean stop ends once the reconcile jobs have (the local runner's metrics reader)."""
    reconciler: Reconciler | None = None
    metrics = ControllerMetrics(store, lambda name: reconciler.max_duration_s(name) if reconciler else None)
    if drift is not None:
        metrics.registry.register(DriftCollector(drift))
    if outbox_health is not None:
        metrics.registry.register(NoticeOutboxCollector(outbox_health))
    reconciler = Reconciler(
        settings,
        store,
        engine,
        registry,
        metrics,
        approval_gate=approval_gate,
        reviewers=reviewers,
        policy_loader=policy_loader,
        clock=clock,
        notifier=notifier,
        link_templates=link_templates,
        workflow_link=workflow_link,
    )
    if traffic is not None:
        reconciler.policy_choice = PolicyChooser(traffic, policy_loader, clock, tune=tuned_policies)
    if drift is not None and drift.responder is not None:  # no rollout starts mid-rollback
        drift.responder.guard(reconciler.model_lock)
    wake = LoopWake(reconciler)
    leadership = leadership or Solo()
    reconciler.leads = leadership.leads  # only the leader reconciles; any replica takes deliveries
    reconciler.owns, reconciler.scope = leadership.owns, leadership.scope  # with shards: its models
    export_leadership(metrics.registry, leadership)
    if isinstance(leadership, LeaseElector):  # a new leader starts at once, not a tick later
        leadership.on_change = lambda leads: wake() if leads else None
    context = ControllerContext(
        settings=settings,
        store=store,
        metrics=metrics,
        wake=wake,
        workflow_link=workflow_link,
        clock=clock,
        drift=drift,
        notice_log=notice_log,
    )
    app = create_app(context)
    # People's actions on rollouts (abort, promote now, retry, approve, reject, pause, resume), applied by
    # the reconcile loop under the model's lock; the console, login and the role gate on every route.
    actions = RolloutActions(store, ActionStore(state_of(settings, store)), reconciler, engine, clock)
    reconciler.actions = actions
    mount(app, context, actions)
    return ControllerService(
        settings, store, reconciler, app, wake, notifier=notifier, drift=drift, leadership=leadership,
        closing=closing,
    )  # fmt: skip


def version_sources() -> Callable[[str, str], str] | None:
    """Resolves a registered version's artifact source through the controller's registry (MLflow), for
    rendering servers that download artifacts; None where no registry is configured."""
    return _version_source(ControllerSettings())


def _version_source(controller: ControllerSettings) -> Callable[[str, str], str] | None:
    if not controller.registry_tracking_uri or controller.registry_backend != "mlflow":
        return None
    from canaryflow.adapters.registry.mlflow import MlflowRegistry

    return MlflowRegistry(controller.registry_tracking_uri).version_source
