"""Readiness from the canary Deployment's status, read with the official `kubernetes` client.

A Deployment is ready for analysis when its controller has observed the latest spec
(`status.observedGeneration >= metadata.generation`) and every desired replica is updated and available:
the same test `kubectl rollout status` applies.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from canaryflow.adapters.readiness.readiness_settings import KubernetesReadinessSettings
from canaryflow.kernel.types import ReadinessResult, RolloutSpec


def api_client(settings: KubernetesReadinessSettings) -> client.ApiClient:
    if settings.in_cluster:
        config.load_incluster_config()
        return client.ApiClient()
    if settings.kubeconfig is not None:
        return config.new_client_from_config(config_file=str(settings.kubeconfig))
    configuration = client.Configuration()
    configuration.host = settings.host or "http://localhost:8001"
    return client.ApiClient(configuration)


class KubernetesReadiness:
    def __init__(self, settings: KubernetesReadinessSettings, api: client.ApiClient | None = None) -> None:
        self.settings = settings
        self._apps = client.AppsV1Api(api or api_client(settings))

    def deployment_name(self, spec: RolloutSpec) -> str:
        return self.settings.deployment_template.format(model=spec.model, version=spec.canary_version)

    def check(self, spec: RolloutSpec) -> ReadinessResult:
        name, ns = self.deployment_name(spec), self.settings.namespace
        try:
            dep: Any = self._apps.read_namespaced_deployment_status(name, ns, _request_timeout=5)
        except ApiException as exc:
            return ReadinessResult(
                ready=False,
                reason=f"canary not ready: deployment {ns}/{name}: API answered {exc.status} {exc.reason}",
            )
        except (HTTPError, OSError) as exc:
            return ReadinessResult(
                ready=False, reason=f"canary not ready: Kubernetes API unreachable ({exc})"
            )
        return deployment_ready(dep, f"{ns}/{name}")


def deployment_ready(dep: Any, where: str) -> ReadinessResult:
    desired = dep.spec.replicas if dep.spec and dep.spec.replicas is not None else 1
    status = dep.status
    generation = dep.metadata.generation or 0
    if status is None or (status.observed_generation or 0) < generation:
        return ReadinessResult(ready=False, reason=f"canary not ready: {where} spec not yet observed")
    updated, available = status.updated_replicas or 0, status.available_replicas or 0
    if updated < desired or available < desired:
        return ReadinessResult(
            ready=False,
            reason=f"canary not ready: {where} {available}/{desired} available, {updated}/{desired} updated",
        )
    return ReadinessResult(ready=True, reason=f"{where} {available}/{desired} available")
