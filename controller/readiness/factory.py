"""Picks the readiness backend: Kubernetes when a cluster is configured, else the inference server."""

from __future__ import annotations

from controller.readiness.base import Readiness
from controller.settings import ControllerSettings


def readiness_from_settings(settings: ControllerSettings) -> Readiness | None:
    if settings.kubernetes is not None:
        from controller.readiness.kubernetes import KubernetesReadiness

        return KubernetesReadiness(settings.kubernetes)
    if settings.inference_url:
        from controller.readiness.http import HttpReadiness

        return HttpReadiness(settings.inference_url)
    return None
