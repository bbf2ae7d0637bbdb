"""Who may do what: the Argo identities and template, the readiness reads, and the network paths.

Least privilege, derived from what a rollout really calls:
- the controller talks to the Argo Server only (submit, get, resume, stop a Workflow) with the token of
  `canaryflow-controller`; the Argo Server checks that identity's Role (workflows/argo/install.py,
  reused here, never copied);
- the workflow pods run as `canaryflow-workflow`; besides what Argo's executor needs, the wait-ready
  step reads the canary Deployment's status (`deployments/status`, get) and the objects the policy's
  traffic router reads the live split from (`live_objects`, get) in the inference namespace;
- nothing gets cluster-wide rights.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from canaryflow.app.install.controller import metadata
from canaryflow.app.install.options import CONTROLLER, LEADER_ROLE, PORT, SELECTOR, InstallOptions
from gitops.traffic import traffic_router
from policies import load_policy
from workflows.argo.install import CONTROLLER_ACCOUNT, install_manifests
from workflows.workflow_settings import WorkflowSettings

READINESS_ROLE = "canaryflow-readiness"


def workflow_settings(options: InstallOptions) -> WorkflowSettings:
    """The workflow settings the cluster runs with: the Argo pieces live in canaryflow's namespace."""
    return WorkflowSettings(
        engine="argo",
        argo_host=options.argo_server_url,
        argo_namespace=options.namespace,
        image=options.image,
    )


def argo_pieces(options: InstallOptions) -> list[dict[str, Any]]:
    """Service accounts, their Roles, the controller's token Secret and the rollout WorkflowTemplate."""
    policy = load_policy(options.policy)
    return install_manifests(policy, options.environment, workflow_settings(options), options.policy)


def readiness_access(options: InstallOptions) -> list[dict[str, Any]]:
    """In the inference namespace: read the status of Deployments and the live traffic split (the objects
    the policy's traffic router reads), for the workflow pods' wait-ready."""
    ns = options.inference_namespace
    account = workflow_settings(options).service_account
    rules = [{"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["get"]}]
    router = traffic_router(load_policy(options.policy).traffic_mode)
    for group in dict.fromkeys(g for g, _ in router.live_objects):
        plurals = [plural for g, plural in router.live_objects if g == group]
        rules.append({"apiGroups": [group], "resources": plurals, "verbs": ["get"]})
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(READINESS_ROLE, ns),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(READINESS_ROLE, ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": READINESS_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": options.namespace}],
        },
    ]


def leader_access(options: InstallOptions) -> list[dict[str, Any]]:
    """Replicas electing their leader by a `coordination.k8s.io/v1` Lease (controller/k8s_lease.py):
    read, create and renew Leases in canaryflow's namespace, nothing else."""
    ns = options.namespace
    rules = [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(LEADER_ROLE, ns),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(LEADER_ROLE, ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": LEADER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": CONTROLLER_ACCOUNT, "namespace": ns}],
        },
    ]


def _in_namespace(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def _service_target(url: str, default_port: int) -> tuple[str | None, int]:
    """(namespace, port) of an in-cluster URL such as http://mlflow.mlflow.svc:5000; a URL outside the
    cluster gives no namespace (then any destination on that port is allowed)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    labels = host.split(".")
    namespace = labels[1] if len(labels) >= 3 and labels[2] == "svc" else None
    return namespace, parts.port or (443 if parts.scheme == "https" else default_port)


def _egress_to(url: str, default_port: int) -> dict[str, Any]:
    namespace, port = _service_target(url, default_port)
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": port}]}
    if namespace is not None:
        rule["to"] = [_in_namespace(namespace)]
    return rule


def network_policy(options: InstallOptions) -> dict[str, Any]:
    """In: the Gateway (webhooks) and Prometheus (metrics). Out: DNS, the Argo Server, MLflow, and HTTPS
    (GitHub's API for the approval gate, notification channels)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(CONTROLLER, options.namespace),
        "spec": {
            "podSelector": {"matchLabels": dict(SELECTOR)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        _in_namespace(options.gateway_namespace),
                        _in_namespace(options.monitoring_namespace),
                    ],
                    "ports": [{"protocol": "TCP", "port": PORT}],
                }
            ],
            "egress": [
                {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                _egress_to(options.argo_server_url, 2746),
                _egress_to(options.mlflow_url, 80),
                {"ports": [{"protocol": "TCP", "port": 443}]},
                # Replicas: the shared PostgreSQL, and the API server (6443 where it is not behind 443).
                *(
                    [{"ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 6443}]}]
                    if options.highly_available
                    else []
                ),
            ],
        },
    }
