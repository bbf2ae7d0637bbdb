"""Readiness adapters against local servers speaking the real wire formats.

Kubernetes: the official client's `read_namespaced_deployment_status` against a server answering
`GET /apis/apps/v1/namespaces/{ns}/deployments/{name}/status` with Deployment JSON as the API server
returns it. Embedded: the inference server's `GET /ready`.
"""

from __future__ import annotations

import pytest

from canaryflow.adapters.readiness.http import HttpReadiness
from canaryflow.adapters.readiness.kubernetes import KubernetesReadiness
from canaryflow.adapters.readiness.readiness_settings import KubernetesReadinessSettings
from canaryflow.kernel.types import RolloutSpec
from tests.support.kube_api import KubeApiServer

SPEC = RolloutSpec(rollout_id="r1", model="minilm", baseline_version="1", canary_version="2")


def deployment(generation=2, observed=2, replicas=2, updated=2, available=2):
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": "minilm-v2",
            "namespace": "ml",
            "generation": generation,
            "uid": "5f0c7e2a-1d2b-4c55-9a4e-3b1f8f8d2c11",
            "resourceVersion": "81234",
            "creationTimestamp": "2026-11-23T10:00:00Z",
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "minilm", "version": "2"}},
            "template": {
                "metadata": {"labels": {"app": "minilm", "version": "2"}},
                "spec": {"containers": [{"name": "server", "image": "canaryflow:0.1.0"}]},
            },
        },
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available >= replicas else "False",
                    "lastUpdateTime": "2026-11-23T10:01:00Z",
                    "lastTransitionTime": "2026-11-23T10:01:00Z",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                }
            ],
        },
    }


@pytest.fixture
def server():
    s = KubeApiServer()
    yield s
    s.close()


PATH = "/apis/apps/v1/namespaces/ml/deployments/minilm-v2/status"


@pytest.mark.parametrize(
    ("doc", "ready", "reason"),
    [
        (deployment(), True, "2/2 available"),
        (deployment(observed=1), False, "spec not yet observed"),
        (deployment(available=1), False, "1/2 available"),
        (deployment(updated=1), False, "1/2 updated"),
    ],
)
def test_kubernetes_deployment_status(server, doc, ready, reason):
    server.routes[PATH] = (200, doc)
    probe = KubernetesReadiness(KubernetesReadinessSettings(host=server.url, namespace="ml"))
    result = probe.check(SPEC)
    assert result.ready is ready and reason in result.reason
    assert server.requests == [PATH]


def test_kubernetes_missing_deployment_and_unreachable_api(server):
    probe = KubernetesReadiness(KubernetesReadinessSettings(host=server.url, namespace="ml"))
    result = probe.check(SPEC)
    assert not result.ready and "answered 404" in result.reason
    url = server.url
    server.close()
    probe = KubernetesReadiness(KubernetesReadinessSettings(host=url, namespace="ml"))
    assert not probe.check(SPEC).ready
    server.close = lambda: None


def test_http_ready_endpoint(server):
    probe = HttpReadiness(server.url)
    assert not probe.check(SPEC).ready
    server.routes["/ready"] = (200, {"status": "ready"})
    assert probe.check(SPEC).ready
    assert server.requests[-1] == "/ready?version=2"
