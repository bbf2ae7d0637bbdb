"""Traffic routers, one file each behind `TrafficRouter` (base.py), found by mode in `ROUTERS`.

`httproute`: one Deployment per version behind a Gateway API HTTPRoute that splits by weight.
`configmap`: one multi-version inference Deployment whose routing ConfigMap carries the weights.
`kserve-serverless`: one KServe InferenceService, the canary its latest revision (`canaryTrafficPercent`).
`kserve-raw`: a KServe InferenceService per version (RawDeployment) behind a weighted HTTPRoute.
`istio`: a Deployment per version, DestinationRule subsets, a VirtualService by weight (mirror, header).
Adding a router: a file with a class implementing `TrafficRouter`, its line below, and its mode's
name in `canaryflow.kernel.contracts.traffic` (docs/architecture.md walks through one).
"""

from __future__ import annotations

from canaryflow.kernel.contracts.traffic import TRAFFIC_MODES
from gitops.traffic.base import ClusterReader, TrafficRouter
from gitops.traffic.configmap import ConfigMapTraffic
from gitops.traffic.httproute import HTTPRouteTraffic
from gitops.traffic.istio import IstioTraffic
from gitops.traffic.kserve_raw import KServeRawTraffic
from gitops.traffic.kserve_serverless import KServeServerlessTraffic

ROUTERS: dict[str, TrafficRouter] = {
    router.mode: router
    for router in (
        ConfigMapTraffic(),
        HTTPRouteTraffic(),
        KServeServerlessTraffic(),
        KServeRawTraffic(),
        IstioTraffic(),
    )
}

if set(ROUTERS) != set(TRAFFIC_MODES):  # a mode without a router, or a router without a mode
    raise RuntimeError(f"traffic routers {sorted(ROUTERS)} do not match the modes {sorted(TRAFFIC_MODES)}")


def traffic_router(mode: str) -> TrafficRouter:
    try:
        return ROUTERS[mode]
    except KeyError:
        raise ValueError(
            f"traffic_mode: unknown mode {mode!r} (one of: {', '.join(sorted(ROUTERS))})"
        ) from None


__all__ = ["ROUTERS", "ClusterReader", "TrafficRouter", "traffic_router"]
