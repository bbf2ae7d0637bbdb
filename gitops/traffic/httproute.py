"""Traffic mode `httproute`: a Deployment and a Service per version, a Gateway API HTTPRoute by weight."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import gitops.traffic.versions as versions
from canaryflow.kernel.contracts.routing import RoutingConfig
from gitops import resources
from gitops.gitops_settings import RenderOptions
from gitops.model import RenderRequest
from gitops.resources import Doc
from gitops.traffic.base import ClusterReader
from gitops.yamlio import load_yaml

HTTPROUTE_FILE = "httproute.yaml"
HTTPROUTE_API_VERSION = "gateway.networking.k8s.io/v1"


class HTTPRouteTraffic:
    mode: ClassVar[str] = "httproute"
    crds: ClassVar[tuple[str, ...]] = ("httproutes.gateway.networking.k8s.io",)
    live_objects: ClassVar[tuple[tuple[str, str], ...]] = (("gateway.networking.k8s.io", "httproutes"),)

    def overlay_documents(
        self, request: RenderRequest, routing: RoutingConfig, options: RenderOptions
    ) -> dict[str, Doc]:
        docs = versions.version_workloads(request, routing, options)
        backends = {
            resources.version_name(request.model, routed.version): routed.weight
            for routed in routing.versions
        }
        docs[HTTPROUTE_FILE] = http_route(request.model, backends, resources.SERVICE_PORT, options)
        return docs

    def routing_from_overlay(self, overlay: Path, model: str) -> RoutingConfig | None:
        """Weights from the HTTPRoute's backends, URIs and roles from each version's Deployment."""
        if not (overlay / HTTPROUTE_FILE).exists():
            return None
        weights = route_weights(load_yaml((overlay / HTTPROUTE_FILE).read_text()), model)
        return RoutingConfig(model=model, versions=versions.routed_versions(overlay, weights))

    def live_weights(self, cluster: ClusterReader, namespace: str, model: str) -> dict[str, int]:
        route = cluster.get_object(HTTPROUTE_API_VERSION, "httproutes", namespace, model)
        return route_weights(route, model) if route is not None else {}


def route_weights(route: Doc, model: str, suffix: str = "") -> dict[str, int]:
    """Version -> weight of the backends (`<model>-v<N><suffix>`) of the route's first rule, the one
    canaryflow renders."""
    backends = route["spec"]["rules"][0]["backendRefs"]
    return {
        str(b["name"]).removeprefix(f"{model}-v").removesuffix(suffix): int(b.get("weight", 1))
        for b in backends
    }


def http_route(model: str, backends: dict[str, int], port: int, options: RenderOptions) -> Doc:
    """An HTTPRoute named after the model, attached to the configured Gateway, splitting by weight
    between Services (name -> weight)."""
    refs = [{"name": name, "port": port, "weight": weight} for name, weight in backends.items()]
    return {
        "apiVersion": HTTPROUTE_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {"name": model, "labels": resources.model_labels(model)},
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": options.gateway_name,
                    "namespace": options.gateway_namespace,
                }
            ],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": refs}],
        },
    }
