"""The traffic-router interface: how a canary step's weight reaches requests, and how to read it back.

A router renders an environment overlay's documents from the routing state (which versions, which
weights), reads that state back from a checkout (what git declares) and from the cluster (what is
live), so a step can be confirmed before its analysis starts. One file per router, one line in
`gitops.traffic.ROUTERS`, the mode's name in `canaryflow.kernel.contracts.traffic`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

from canaryflow.kernel.contracts.routing import RoutingConfig
from gitops.gitops_settings import RenderOptions
from gitops.model import RenderRequest
from gitops.resources import Doc


class ClusterReader(Protocol):
    """Reads one object from the Kubernetes API; None when it does not exist."""

    def get_object(
        self, api_version: str, plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None: ...


class TrafficRouter(Protocol):
    mode: ClassVar[str]
    crds: ClassVar[tuple[str, ...]]
    """CustomResourceDefinitions (`plural.group`) the rendered overlay needs in the cluster."""
    live_objects: ClassVar[tuple[tuple[str, str], ...]]
    """(API group, resource) of every object `live_weights` reads: the Role the wait-ready step needs."""

    def overlay_documents(
        self, request: RenderRequest, routing: RoutingConfig, options: RenderOptions
    ) -> dict[str, Doc]:
        """Overlay files (name -> document) that serve `routing`; the base is shared by every mode."""
        ...

    def routing_from_overlay(self, overlay: Path, model: str) -> RoutingConfig | None:
        """The routing state a checked-out overlay declares; None when it holds no state of this mode."""
        ...

    def live_weights(self, cluster: ClusterReader, namespace: str, model: str) -> dict[str, int]:
        """Version -> weight as the cluster serves it now (empty when the router object is missing)."""
        ...
