"""`ClusterReader` over the official kubernetes client: one GET by kind, answered as plain JSON.

Routers read their live objects (a ConfigMap, an HTTPRoute, a VirtualService…) through this one
method, so a new router needs no client code of its own, and tests serve the same REST paths locally.
Custom resources go through `CustomObjectsApi`; the few built-in kinds routers read through their
typed APIs (the client has no generic GET that is stable across its releases).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException


class KubernetesObjects:
    def __init__(self, api: client.ApiClient, timeout_s: float = 10.0) -> None:
        self._api = api
        self._timeout_s = timeout_s
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self._builtin: dict[tuple[str, str], Callable[..., Any]] = {
            ("v1", "configmaps"): core.read_namespaced_config_map,
            ("v1", "services"): core.read_namespaced_service,
            ("apps/v1", "deployments"): apps.read_namespaced_deployment,
        }
        self._custom = client.CustomObjectsApi(api)

    @staticmethod
    def path(api_version: str, plural: str, namespace: str, name: str) -> str:
        """The REST path of an object (what the API server serves it under)."""
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        return f"{prefix}/namespaces/{namespace}/{plural}/{name}"

    def get_object(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            builtin = self._builtin.get((api_version, plural))
            if builtin is not None:
                typed = builtin(name, namespace, _request_timeout=self._timeout_s)
                body = self._api.sanitize_for_serialization(typed)
            elif "/" in api_version:
                group, version = api_version.split("/", 1)
                body = self._custom.get_namespaced_custom_object(
                    group, version, namespace, plural, name, _request_timeout=self._timeout_s
                )
            else:
                raise ValueError(f"{api_version} {plural}: not a kind this reader knows")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return body if isinstance(body, dict) else None
