"""What a cluster needs before rollouts run on Argo: the WorkflowTemplate, and identities with RBAC.

- `canaryflow-workflow`: the service account the rollout pods run as. Argo's emissary executor
  reports outputs through `workflowtaskresults` and patches its own pod; the steps themselves talk only
  to git, MLflow, Prometheus and GitHub, so they need nothing more from the Kubernetes API.
- `canaryflow-controller`: the identity whose token the controller presents to the Argo Server to
  submit, read, resume and stop rollout workflows (Argo Server in `client`/`sso` auth mode checks it).
"""

from __future__ import annotations

from typing import Any

from policies.model import Policy
from workflows.argo.render import manifest, rollout_template
from workflows.workflow_settings import WorkflowSettings

CONTROLLER_ACCOUNT = "canaryflow-controller"


def _account(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}


def _role(name: str, namespace: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }


def _binding(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def rbac_manifests(settings: WorkflowSettings) -> list[dict[str, Any]]:
    ns = settings.argo_namespace
    pod_account = settings.service_account
    pod_rules = [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]},
    ]
    controller_rules = [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflows"],
            "verbs": ["create", "get", "list", "watch", "update", "patch"],
        },
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtemplates"],
            "verbs": ["create", "get", "list"],
        },
    ]
    return [
        _account(pod_account, ns),
        _role(pod_account, ns, pod_rules),
        _binding(pod_account, ns),
        _account(CONTROLLER_ACCOUNT, ns),
        _role(CONTROLLER_ACCOUNT, ns, controller_rules),
        _binding(CONTROLLER_ACCOUNT, ns),
    ]


def install_manifests(
    policy: Policy, environment: str, settings: WorkflowSettings, policy_ref: str | None = None
) -> list[dict[str, Any]]:
    """Everything `kubectl apply -f` needs, service accounts first so the template's pods can start."""
    return [*rbac_manifests(settings), manifest(rollout_template(policy, environment, settings, policy_ref))]
