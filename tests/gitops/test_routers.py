"""Traffic routers: the registry covers every mode, and each router reads back what it rendered, from
a checkout and from the cluster (the kubernetes client against a local server on the real REST paths).

Where a controller reports the live state in `status` (KServe Serverless), the stand-in serves the
status that controller writes once it has reconciled the object, in KServe's and Knative's wire format.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from canaryflow.kernel.contracts.traffic import TRAFFIC_MODES
from gitops.model import RenderRequest
from gitops.render import render, routing_config
from gitops.traffic import ROUTERS, traffic_router
from gitops.traffic.cluster import KubernetesObjects
from gitops.yamlio import load_yaml
from tests.gitops.conftest import GOLDEN_OPTIONS
from tests.support.kube_api import serverless_reconciled


def _request(mode: str) -> RenderRequest:
    return RenderRequest(
        model="minilm",
        environment="production",
        baseline_version="3",
        canary_version="4",
        weight=20,
        traffic_mode=mode,
    )


def test_every_mode_has_exactly_one_router() -> None:
    assert sorted(ROUTERS) == sorted(TRAFFIC_MODES)
    for mode, router in ROUTERS.items():
        assert router.mode == mode
        assert traffic_router(mode) is router


@pytest.mark.parametrize("mode", TRAFFIC_MODES)
def test_live_weights_read_back_what_was_rendered(mode: str, cluster) -> None:
    server, objects = cluster
    request = _request(mode)
    rendering = render(request, GOLDEN_OPTIONS)
    # Serve every rendered overlay object at the path the API server would, as Argo CD applied it.
    for path, text in rendering.files.items():
        if "/overlays/" not in path or path.endswith("kustomization.yaml"):
            continue
        doc = load_yaml(text)
        plural = doc["kind"].lower() + ("es" if doc["kind"].endswith("s") else "s")
        applied = {**doc, "metadata": {**doc["metadata"], "namespace": "ml", "resourceVersion": "7"}}
        if doc["kind"] == "InferenceService" and mode == "kserve-serverless":
            applied = serverless_reconciled(server, applied, previous_version=request.baseline_version)
        server.serve(
            KubernetesObjects.path(doc["apiVersion"], plural, "ml", doc["metadata"]["name"]), applied
        )
    expected = {v.version: v.weight for v in routing_config(request, GOLDEN_OPTIONS).versions}
    assert expected == {"3": 80, "4": 20}
    assert traffic_router(mode).live_weights(objects, "ml", "minilm") == expected
    assert server.requests, "the router read the cluster"
    # Everything it read is declared, so the wait-ready step's Role grants it (canaryflow install).
    for path in server.requests:
        api, _, rest = path.split("?")[0].removeprefix("/").partition("/namespaces/ml/")
        group = "" if api == "api/v1" else api.removeprefix("apis/").rsplit("/", 1)[0]
        assert (group, rest.split("/")[0]) in traffic_router(mode).live_objects, path


@pytest.mark.parametrize("mode", TRAFFIC_MODES)
def test_live_weights_of_a_missing_router_object_are_empty(mode: str, cluster) -> None:
    _, objects = cluster
    assert traffic_router(mode).live_weights(objects, "ml", "minilm") == {}


def test_cluster_errors_other_than_not_found_are_raised(cluster) -> None:
    server, objects = cluster
    path = KubernetesObjects.path("v1", "configmaps", "ml", "minilm-routing")
    server.serve(path, {"kind": "Status", "code": 403, "reason": "Forbidden"}, status=403)
    with pytest.raises(client.exceptions.ApiException):
        traffic_router("configmap").live_weights(objects, "ml", "minilm")
