"""Traffic modes: how the weight of a canary step reaches requests.

A mode renders an environment overlay's documents from the routing state (which versions, which
weights). `httproute`: one Deployment per version behind a Gateway API HTTPRoute that splits by weight.
`configmap`: one multi-version inference Deployment whose routing ConfigMap carries the weights.
"""

from __future__ import annotations

from typing import Protocol

from canaryflow.kernel.contracts.routing import RoutingConfig
from gitops.model import RenderRequest
from gitops.resources import Doc
from gitops.settings import RenderOptions


class TrafficRenderer(Protocol):
    def overlay_documents(
        self, request: RenderRequest, routing: RoutingConfig, options: RenderOptions
    ) -> dict[str, Doc]:
        """Overlay files (name -> document) that serve `routing`; the base is shared by every mode."""
        ...


def traffic_renderer(mode: str) -> TrafficRenderer:
    from gitops.traffic.configmap import ConfigMapTraffic
    from gitops.traffic.httproute import HTTPRouteTraffic

    renderers: dict[str, TrafficRenderer] = {"httproute": HTTPRouteTraffic(), "configmap": ConfigMapTraffic()}
    try:
        return renderers[mode]
    except KeyError:
        raise ValueError(f"traffic_mode: unknown mode {mode!r} (one of: configmap, httproute)") from None
