"""Picks the readiness backend: Kubernetes when a cluster is configured, else the inference server."""

from __future__ import annotations

from canaryflow.adapters.readiness.base import Readiness
from canaryflow.adapters.readiness.readiness_settings import KubernetesReadinessSettings


def readiness_from_settings(
    kubernetes: KubernetesReadinessSettings | None, inference_url: str | None
) -> Readiness | None:
    if kubernetes is not None:
        if not kubernetes.deployment_template:
            # No Deployment to watch (KServe Serverless names them by revision); the wait-ready step
            # still waits for the live traffic split, which Knative only routes to ready revisions.
            return None
        from canaryflow.adapters.readiness.kubernetes import KubernetesReadiness

        return KubernetesReadiness(kubernetes)
    if inference_url:
        from canaryflow.adapters.readiness.http import HttpReadiness

        return HttpReadiness(inference_url)
    return None
