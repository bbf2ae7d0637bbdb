"""Traffic mode `istio`: per-version Deployments, a DestinationRule subset per version, a VirtualService
splitting by weight between the subsets.

The VirtualService serves the model's own Service (the base's `<model>`, which selects every version's
pods), so callers inside the mesh keep one address. Optional, from the settings: requests carrying
`x-canary: always` go to the canary whatever the weight (smoke tests), and the routing state's shadow
mode mirrors a share of requests to the canary (Istio `mirror`, responses discarded).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import gitops.traffic.versions as versions
from canaryflow.kernel.contracts.routing import RoutingConfig, ShadowConfig
from gitops import resources
from gitops.gitops_settings import RenderOptions
from gitops.model import RenderRequest
from gitops.resources import Doc
from gitops.traffic.base import ClusterReader
from gitops.yamlio import load_yaml

ISTIO_API_VERSION = "networking.istio.io/v1"
VIRTUALSERVICE_FILE = "virtualservice.yaml"
DESTINATIONRULE_FILE = "destinationrule.yaml"
CANARY_HEADER = "x-canary"
CANARY_HEADER_VALUE = "always"
HEADER_ROUTE = "canary-header"
WEIGHTED_ROUTE = "weighted"


def subset(version: str) -> str:
    return f"v{version}"


class IstioTraffic:
    mode: ClassVar[str] = "istio"
    crds: ClassVar[tuple[str, ...]] = (
        "virtualservices.networking.istio.io",
        "destinationrules.networking.istio.io",
    )
    live_objects: ClassVar[tuple[tuple[str, str], ...]] = (("networking.istio.io", "virtualservices"),)

    def overlay_documents(
        self, request: RenderRequest, routing: RoutingConfig, options: RenderOptions
    ) -> dict[str, Doc]:
        docs = versions.version_workloads(request, routing, options)
        docs[DESTINATIONRULE_FILE] = _destination_rule(request.model, routing)
        docs[VIRTUALSERVICE_FILE] = _virtual_service(request.model, routing, options)
        return docs

    def routing_from_overlay(self, overlay: Path, model: str) -> RoutingConfig | None:
        """Weights and shadow from the VirtualService, URIs and roles from each version's Deployment."""
        if not (overlay / VIRTUALSERVICE_FILE).exists():
            return None
        route = _weighted_route(load_yaml((overlay / VIRTUALSERVICE_FILE).read_text()))
        shadow = ShadowConfig()
        if "mirror" in route:
            shadow = ShadowConfig(enabled=True, sample_rate=route["mirrorPercentage"]["value"] / 100)
        return RoutingConfig(
            model=model, versions=versions.routed_versions(overlay, _weights(route)), shadow=shadow
        )

    def live_weights(self, cluster: ClusterReader, namespace: str, model: str) -> dict[str, int]:
        service = cluster.get_object(ISTIO_API_VERSION, "virtualservices", namespace, model)
        return _weights(_weighted_route(service)) if service is not None else {}


def _weighted_route(service: Doc) -> Doc:
    """The route every request without the canary header takes: the last one canaryflow renders."""
    routes = service["spec"]["http"]
    named = [r for r in routes if r.get("name") == WEIGHTED_ROUTE]
    return dict(named[0] if named else routes[-1])


def _weights(route: Doc) -> dict[str, int]:
    """Version -> weight by subset; a lone destination without a weight takes everything."""
    weights: dict[str, int] = {}
    for target in route["route"]:
        version = str(target["destination"].get("subset", "")).removeprefix("v")
        weights[version] = weights.get(version, 0) + int(target.get("weight", 100))
    return weights


def _destination(model: str, version: str) -> Doc:
    return {"host": model, "subset": subset(version), "port": {"number": resources.SERVICE_PORT}}


def _destination_rule(model: str, routing: RoutingConfig) -> Doc:
    return {
        "apiVersion": ISTIO_API_VERSION,
        "kind": "DestinationRule",
        "metadata": {"name": model, "labels": resources.model_labels(model)},
        "spec": {
            "host": model,
            "subsets": [
                {"name": subset(v.version), "labels": {resources.VERSION_LABEL: v.version}}
                for v in routing.versions
            ],
        },
    }


def _virtual_service(model: str, routing: RoutingConfig, options: RenderOptions) -> Doc:
    canary = next((v for v in routing.versions if v.role == "canary"), None)
    routes: list[Doc] = []
    if canary is not None and options.canary_header_routing:
        routes.append(
            {
                "name": HEADER_ROUTE,
                "match": [{"headers": {CANARY_HEADER: {"exact": CANARY_HEADER_VALUE}}}],
                "route": [{"destination": _destination(model, canary.version)}],
            }
        )
    weighted: Doc = {
        "name": WEIGHTED_ROUTE,
        "route": [
            {"destination": _destination(model, v.version), "weight": v.weight} for v in routing.versions
        ],
    }
    if canary is not None and routing.shadow.enabled:
        weighted["mirror"] = _destination(model, canary.version)
        weighted["mirrorPercentage"] = {"value": round(routing.shadow.sample_rate * 100, 4)}
    routes.append(weighted)
    spec: Doc = {"hosts": [model, *options.istio_hosts]}
    if options.istio_gateways:
        spec["gateways"] = [*options.istio_gateways, "mesh"]
    spec["http"] = routes
    return {
        "apiVersion": ISTIO_API_VERSION,
        "kind": "VirtualService",
        "metadata": {"name": model, "labels": resources.model_labels(model)},
        "spec": spec,
    }
