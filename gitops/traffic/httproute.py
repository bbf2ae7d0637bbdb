"""Traffic mode `httproute`: a Deployment and a Service per version, a Gateway API HTTPRoute by weight."""

from __future__ import annotations

from canaryflow.kernel.contracts.routing import RoutingConfig
from gitops import resources
from gitops.model import RenderRequest
from gitops.resources import Doc
from gitops.settings import RenderOptions

HTTPROUTE_FILE = "httproute.yaml"


def deployment_file(version: str) -> str:
    return f"deployment-v{version}.yaml"


class HTTPRouteTraffic:
    def overlay_documents(
        self, request: RenderRequest, routing: RoutingConfig, options: RenderOptions
    ) -> dict[str, Doc]:
        docs: dict[str, Doc] = {}
        for routed in routing.versions:
            name = resources.version_name(request.model, routed.version)
            # The pod template carries no role: promoting a canary relabels its Deployment only,
            # without restarting the pods that were just judged healthy.
            pod_labels = {**resources.model_labels(request.model), resources.VERSION_LABEL: routed.version}
            selector = {"app.kubernetes.io/name": request.model, resources.VERSION_LABEL: routed.version}
            deployment = resources.inference_deployment(
                name=name,
                labels=pod_labels,
                selector=selector,
                args=["serve", "--model-uri", routed.uri, "--host", "0.0.0.0", "--port", str(options.port)],
                options=options,
            )
            deployment["metadata"]["labels"] = resources.version_labels(request.model, routed)
            docs[deployment_file(routed.version)] = deployment
            docs[f"service-v{routed.version}.yaml"] = resources.service(
                name=name, labels=resources.version_labels(request.model, routed), selector=selector
            )
        docs[HTTPROUTE_FILE] = _http_route(request, routing, options)
        return docs


def _http_route(request: RenderRequest, routing: RoutingConfig, options: RenderOptions) -> Doc:
    backends = [
        {
            "name": resources.version_name(request.model, routed.version),
            "port": resources.SERVICE_PORT,
            "weight": routed.weight,
        }
        for routed in routing.versions
    ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": request.model, "labels": resources.model_labels(request.model)},
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": options.gateway_name,
                    "namespace": options.gateway_namespace,
                }
            ],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backends}],
        },
    }
