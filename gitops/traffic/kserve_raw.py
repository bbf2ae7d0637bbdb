"""Traffic mode `kserve-raw`: one KServe InferenceService per version in RawDeployment mode (a plain
Deployment and Service each, `<model>-v<N>-predictor`), behind a Gateway API HTTPRoute by weight.

The InferenceServices are cluster-local (`networking.kserve.io/visibility`), so the HTTPRoute, attached
to the configured Gateway like the `httproute` mode's, is the one way in. A version leaving the state
leaves the overlay, and Argo CD prunes its InferenceService.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import gitops.traffic.kserve as kserve
from canaryflow.kernel.contracts.routing import RoutingConfig
from gitops import resources
from gitops.model import RenderRequest
from gitops.profiles import workload
from gitops.resources import Doc
from gitops.settings import RenderOptions
from gitops.traffic.base import ClusterReader
from gitops.traffic.httproute import HTTPROUTE_API_VERSION, http_route, route_weights

HTTPROUTE_FILE = "httproute-predictors.yaml"  # not `httproute.yaml`: that file is the httproute mode's
PREDICTOR_SUFFIX = "-predictor"  # KServe names a predictor's Service `<InferenceService>-predictor`
VISIBILITY_LABEL = "networking.kserve.io/visibility"


def isvc_file(version: str) -> str:
    return f"inferenceservice-v{version}.yaml"


class KServeRawTraffic:
    mode: ClassVar[str] = "kserve-raw"
    crds: ClassVar[tuple[str, ...]] = (kserve.ISVC_CRD, "httproutes.gateway.networking.k8s.io")
    live_objects: ClassVar[tuple[tuple[str, str], ...]] = (("gateway.networking.k8s.io", "httproutes"),)

    def overlay_documents(
        self, request: RenderRequest, routing: RoutingConfig, options: RenderOptions
    ) -> dict[str, Doc]:
        docs: dict[str, Doc] = {}
        backends: dict[str, int] = {}
        for routed in routing.versions:
            name = resources.version_name(request.model, routed.version)
            labels = {
                **resources.model_labels(request.model),
                resources.VERSION_LABEL: routed.version,
                VISIBILITY_LABEL: "cluster-local",
            }
            predictor = kserve.predictor(request, routed, options, raw=True)
            docs[isvc_file(routed.version)] = kserve.inference_service(
                name, labels, "RawDeployment", predictor
            )
            backends[name + PREDICTOR_SUFFIX] = routed.weight
        docs[HTTPROUTE_FILE] = http_route(request.model, backends, resources.SERVICE_PORT, options)
        docs[kserve.STATE_FILE] = kserve.state_configmap(request.model, routing)
        docs[kserve.PODMONITOR_FILE] = kserve.pod_monitor(
            request.model,
            options,
            workload.server_for(request, routing.versions[0], options, kserve.PREDICTOR_PORT, True),
        )
        return docs

    def routing_from_overlay(self, overlay: Path, model: str) -> RoutingConfig | None:
        if not any(overlay.glob(isvc_file("*"))):
            return None
        return kserve.routing_from_state(overlay)

    def live_weights(self, cluster: ClusterReader, namespace: str, model: str) -> dict[str, int]:
        route = cluster.get_object(HTTPROUTE_API_VERSION, "httproutes", namespace, model)
        return route_weights(route, model, PREDICTOR_SUFFIX) if route is not None else {}
