"""`WorkflowEngine` on Argo Workflows, through the Argo Server REST API (Hera's `WorkflowsService`).

Argo runs the DAG itself; this side submits a Workflow that references the installed WorkflowTemplate,
reads it back (phase, node phases, node outputs) and resumes or stops it for the controller.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests
from hera.exceptions import AlreadyExists, HeraException
from hera.workflows import WorkflowsService
from hera.workflows import models as argo

from canaryflow.kernel.guarded_input import InputRefused, read_regular_file
from canaryflow.kernel.ports import EngineRefused
from canaryflow.kernel.types import RolloutSpec, WorkflowNodeStatus, WorkflowStatus
from policies.model import Policy
from workflows.argo.render import rollout_template, rollout_workflow, workflow_from_template
from workflows.dag import APPROVAL_NODE, workflow_name
from workflows.workflow_settings import WorkflowSettings

# Argo marks a stopped workflow Failed; the message says it was stopped, which is what the controller
# needs to tell "analysis failed" from "someone stopped it".
_STOPPED_PREFIX = "Stopped with strategy"
_NODE_TYPES = {"Pod", "Retry", "Suspend", "Skipped", "Omitted"}


class ArgoError(RuntimeError):
    """The Argo Server refused or could not be reached; the message says which call and why."""


class _TimedSession(requests.Session):
    """Hera's requests session with a deadline on every call: a hung Argo Server fails the call (an
    ArgoError, retried next tick) instead of holding a reconcile worker for ever. With `token_path`,
    the bearer token is read from that file on every call: a projected service-account token is
    replaced by the kubelet before it expires, so a token read once at start would lapse."""

    def __init__(self, timeout_s: float, token_path: str | None = None) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self.token_path = token_path

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_s)
        if self.token_path:
            try:
                token = read_regular_file(self.token_path, 64 * 1024, what="Argo token").decode().strip()
            except (InputRefused, UnicodeDecodeError) as exc:
                raise ArgoError(f"argo_token_path: {exc}") from exc
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Bearer {token}"}
        return super().request(method, url, *args, **kwargs)


def service_from_settings(settings: WorkflowSettings) -> WorkflowsService:
    token = settings.argo_token.get_secret_value() if settings.argo_token else None
    token_path = None if token else settings.argo_token_path
    # requests takes a CA bundle path where Hera passes `verify_ssl` through.
    verify: Any = settings.argo_ca_bundle if settings.argo_ca_bundle else settings.argo_verify_tls
    host = settings.argo_host.rstrip("/") + "/"
    return WorkflowsService(
        host=host,
        token=token,
        namespace=settings.argo_namespace,
        verify_ssl=verify,
        session=_TimedSession(settings.argo_timeout_s, token_path),
    )


def _epoch(value: Any) -> float | None:
    moment = getattr(value, "root", value)
    return moment.timestamp() if isinstance(moment, datetime) else None


def _node_status(node: argo.NodeStatus) -> WorkflowNodeStatus:
    params = (node.outputs.parameters if node.outputs else None) or []
    return WorkflowNodeStatus(
        id=node.display_name or node.name,
        phase=node.phase or "Pending",
        outputs={p.name: p.value for p in params if p.value is not None},
        started_at=_epoch(node.started_at),
        finished_at=_epoch(node.finished_at),
        message=node.message or "",
    )


def _paused(workflow: argo.Workflow) -> bool:
    return bool(workflow.spec and workflow.spec.suspend)


def _waiting_suspend(workflow: argo.Workflow) -> str | None:
    """The display name of a suspend node that waits now (Argo's `IsActiveSuspendNode`), if any."""
    for node in ((workflow.status.nodes if workflow.status else None) or {}).values():
        if node.type == "Suspend" and node.phase == "Running":
            return node.display_name or node.name
    return None


def workflow_status(workflow: argo.Workflow) -> WorkflowStatus:
    """Argo's Workflow object in canaryflow's terms: one entry per DAG node, named by its node id."""
    name = workflow.metadata.name or ""
    status = workflow.status or argo.WorkflowStatus()
    message = status.message or ""
    phase = status.phase or "Pending"
    if phase == "Failed" and message.startswith(_STOPPED_PREFIX):
        phase = "Stopped"
    nodes = [
        _node_status(node)
        for node in (status.nodes or {}).values()
        if node.type in _NODE_TYPES and node.display_name and "(" not in node.display_name
    ]
    nodes.sort(key=lambda n: (n.started_at or float("inf"), n.id))
    running = [n.id for n in nodes if n.phase in ("Running", "Pending")]
    return WorkflowStatus(
        name=name,
        phase=phase,
        node=running[-1] if running else None,
        message=message,
        nodes=nodes,
    )


class ArgoEngine:
    """Rollouts as Workflows on an Argo Server; the WorkflowTemplate must be installed (`install`)."""

    def __init__(
        self,
        settings: WorkflowSettings,
        policy_for: Callable[[str], Policy],
        service: WorkflowsService | None = None,
    ) -> None:
        self._settings = settings
        self._policy_for = policy_for
        self._service = service or service_from_settings(settings)
        self._ns = settings.argo_namespace

    def _call(self, what: str, fn: Callable[[], argo.Workflow]) -> argo.Workflow:
        try:
            return fn()
        except HeraException as exc:
            raise ArgoError(f"Argo Server {what}: {exc}") from exc
        except OSError as exc:  # connection refused, TLS, DNS: requests' errors are OSErrors
            raise ArgoError(f"Argo Server {what}: {exc}") from exc

    def install(self, policy: Policy, environment: str, policy_ref: str | None = None) -> str:
        """Creates the policy's WorkflowTemplate (an existing one is left as it is)."""
        template = rollout_template(policy, environment, self._settings, policy_ref)
        request = argo.WorkflowTemplateCreateRequest(namespace=self._ns, template=template)
        try:
            self._service.create_workflow_template(request, namespace=self._ns)
        except AlreadyExists:
            pass
        except (HeraException, OSError) as exc:
            raise ArgoError(f"Argo Server create workflow template: {exc}") from exc
        return template.metadata.name or ""

    def submit(self, spec: RolloutSpec) -> str:
        """Creates the rollout's Workflow; submitting the same rollout twice creates it once."""
        workflow = workflow_from_template(spec, self._policy_for(spec.policy), self._settings)
        request = argo.WorkflowCreateRequest(namespace=self._ns, workflow=workflow)
        try:
            created = self._service.create_workflow(request, namespace=self._ns)
        except AlreadyExists:
            return workflow_name(spec)
        except (HeraException, OSError) as exc:
            raise ArgoError(f"Argo Server create workflow: {exc}") from exc
        return created.metadata.name or workflow_name(spec)

    def lint(self, spec: RolloutSpec) -> None:
        """Has the Argo Server check the rollout's whole Workflow (inline DAG) without creating it."""
        workflow = rollout_workflow(spec, self._policy_for(spec.policy), self._settings)
        request = argo.WorkflowLintRequest(namespace=self._ns, workflow=workflow)
        self._call("lint workflow", lambda: self._service.lint_workflow(request, self._ns))

    def status(self, name: str) -> WorkflowStatus:
        return workflow_status(self._call("get workflow", lambda: self._service.get_workflow(name, self._ns)))

    def reconcile(self, name: str) -> WorkflowStatus:
        # Argo moves the DAG on by itself; reconciling is reading where it stands.
        return self.status(name)

    def resume(self, name: str) -> None:
        """Resumes the approval gate only (never another suspended node); a workflow paused as a whole
        while the gate was reached is unpaused as well (nothing else is suspended by then)."""
        request = argo.WorkflowResumeRequest(
            name=name, namespace=self._ns, node_field_selector=f"displayName={APPROVAL_NODE}"
        )
        self._call("resume workflow", lambda: self._service.resume_workflow(name, request, self._ns))
        if _paused(self._get(name)):
            self._unsuspend(name)

    def stop(self, name: str, reason: str) -> None:
        """Stop (not terminate): Argo still runs the exit handler, which rolls back. A paused workflow
        is unpaused after the stop is set (a suspended workflow runs nothing, its exit handler neither);
        under the Stop strategy Argo starts only the exit handler, so no other node runs."""
        request = argo.WorkflowStopRequest(name=name, namespace=self._ns, message=reason)
        self._call("stop workflow", lambda: self._service.stop_workflow(name, request, self._ns))
        if _paused(self._get(name)):
            self._unsuspend(name)

    # --- pause and retry (the console's actions) --------------------------------------------------

    def pause(self, name: str) -> None:
        """Suspends the workflow (`PUT .../suspend`: `spec.suspend`): Argo starts no further node until
        it is resumed. A running analysis pod carries on to its verdict, and the next step waits."""
        workflow = self._get(name)
        if (waiting := _waiting_suspend(workflow)) is not None:
            raise EngineRefused(f"workflow {name} waits at {waiting} already: approve, reject or abort it")
        request = argo.WorkflowSuspendRequest(name=name, namespace=self._ns)
        self._call("suspend workflow", lambda: self._service.suspend_workflow(name, request, self._ns))

    def unpause(self, name: str) -> None:
        """Clears `spec.suspend` (`PUT .../resume` without a node selector). Argo's resume without a
        selector also passes every waiting suspend node, so it is refused while the approval gate
        waits (approve or reject it: either unpauses too)."""
        workflow = self._get(name)
        if not _paused(workflow):
            return
        if (waiting := _waiting_suspend(workflow)) is not None:
            raise EngineRefused(f"workflow {name} waits at {waiting}: approve or reject it to go on")
        self._unsuspend(name)

    def retry_from(self, name: str, node: str, note: str) -> list[str]:
        """Argo's retry of a failed workflow (`PUT .../retry`, `restartSuccessful` with the node
        selector `displayName=<node>`): the failed nodes, `node` and every node after it run again,
        and the exit handler once the workflow ends again. `note` goes to the log (the action record
        and the rollout's transition carry who and why). Refused unless the workflow failed."""
        workflow = self._get(name)
        phase = (workflow.status.phase if workflow.status else None) or "Pending"
        if phase not in ("Failed", "Error"):
            raise EngineRefused(f"workflow {name} is {phase}: only a failed workflow is retried")
        request = argo.WorkflowRetryRequest(
            name=name, namespace=self._ns, restart_successful=True, node_field_selector=f"displayName={node}"
        )
        self._call("retry workflow", lambda: self._service.retry_workflow(name, request, self._ns))
        return [node]

    def _unsuspend(self, name: str) -> None:
        request = argo.WorkflowResumeRequest(name=name, namespace=self._ns)
        self._call("resume workflow", lambda: self._service.resume_workflow(name, request, self._ns))

    def _get(self, name: str) -> argo.Workflow:
        return self._call("get workflow", lambda: self._service.get_workflow(name, self._ns))

    def link(self, name: str) -> str:
        """Where an operator watches the rollout in the Argo UI."""
        return f"{self._settings.argo_host.rstrip('/')}/workflows/{self._ns}/{name}"
