"""How the controller is reached and watched: namespaces, the webhook route, the metrics scrape, and
the Argo CD Application that syncs the GitOps repo's own Applications (app of apps).

Only `/webhooks` goes through the Gateway: the registries and GitHub must reach it from outside, while
the rollout API (`/rollouts`) and `/metrics` stay inside the cluster.
"""

from __future__ import annotations

from typing import Any

from canaryflow.app.install.controller import metadata
from canaryflow.app.install.options import CONTROLLER, PART_OF, PORT, SELECTOR, InstallOptions

WEBHOOK_PREFIX = "/webhooks"
APPS_APPLICATION = "canaryflow-apps"


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(PART_OF)}}


def webhook_route(options: InstallOptions) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "parentRefs": [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": options.gateway_name,
                "namespace": options.gateway_namespace,
            }
        ],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": WEBHOOK_PREFIX}}],
                "backendRefs": [
                    {"group": "", "kind": "Service", "name": CONTROLLER, "port": PORT, "weight": 1}
                ],
            }
        ],
    }
    if options.webhook_hostname:
        spec["hostnames"] = [options.webhook_hostname]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(f"{CONTROLLER}-webhooks", options.namespace),
        "spec": spec,
    }


def service_monitor(options: InstallOptions) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(CONTROLLER, options.namespace, **options.monitor_labels),
        "spec": {
            "selector": {"matchLabels": dict(SELECTOR)},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
        },
    }


def apps_application(options: InstallOptions) -> dict[str, Any]:
    """Argo CD syncs `argocd/` of the GitOps repo, where every rollout's Application is committed."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": APPS_APPLICATION,
            "namespace": options.argocd_namespace,
            "labels": dict(PART_OF),
        },
        "spec": {
            "project": "default",
            "source": {"repoURL": options.gitops_repo_url, "targetRevision": "main", "path": "argocd"},
            "destination": {
                "server": "https://kubernetes.default.svc",
                "namespace": options.argocd_namespace,
            },
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    }
