"""Traffic mode `httproute`: a Deployment and a Service per version, a Gateway API HTTPRoute by weight."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from canaryflow.kernel.contracts.routing import RoutedVersion, RoutingConfig
from gitops import resources
from gitops.model import RenderRequest
from gitops.resources import Doc
from gitops.settings import RenderOptions
from gitops.traffic.base import ClusterReader
from gitops.yamlio import load_yaml

HTTPROUTE_FILE = "httproute.yaml"
HTTPROUTE_API_VERSION = "gateway.networking.k8s.io/v1"


def deployment_file(version: str) -> str:
    return f"deployment-v{version}.yaml"


class HTTPRouteTraffic:
    mode: ClassVar[str] = "httproute"
    crds: ClassVar[tuple[str, ...]] = ("httproutes.gateway.networking.k8s.io",)

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

    def routing_from_overlay(self, overlay: Path, model: str) -> RoutingConfig | None:
        """Weights from the HTTPRoute's backends, URIs and roles from each version's Deployment."""
        if not (overlay / HTTPROUTE_FILE).exists():
            return None
        versions = []
        for version, weight in _weights(load_yaml((overlay / HTTPROUTE_FILE).read_text()), model).items():
            deployment = load_yaml((overlay / deployment_file(version)).read_text())
            args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            role = deployment["metadata"]["labels"][resources.ROLE_LABEL]
            uri = args[args.index("--model-uri") + 1]
            versions.append(RoutedVersion(version=version, uri=uri, weight=weight, role=role))
        return RoutingConfig(model=model, versions=versions)

    def live_weights(self, cluster: ClusterReader, namespace: str, model: str) -> dict[str, int]:
        route = cluster.get_object(HTTPROUTE_API_VERSION, "httproutes", namespace, model)
        return _weights(route, model) if route is not None else {}


def _weights(route: Doc, model: str) -> dict[str, int]:
    """Version -> weight of the backends of the route's first rule (the one canaryflow renders)."""
    backends = route["spec"]["rules"][0]["backendRefs"]
    return {str(b["name"]).removeprefix(f"{model}-v"): int(b.get("weight", 1)) for b in backends}


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
        "apiVersion": HTTPROUTE_API_VERSION,
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
