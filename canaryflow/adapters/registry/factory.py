"""Which model registry the controller and the steps talk to: one line per backend.

A backend is a class implementing the kernel's `Registry` port, built from the registry's URI. MLflow
covers the OSS tracking server and Databricks workspaces (`databricks` URIs) through one client.
"""

from __future__ import annotations

from collections.abc import Callable

from canaryflow.adapters.registry.mlflow import MlflowRegistry
from canaryflow.kernel.ports import Registry

REGISTRIES: dict[str, Callable[[str], Registry]] = {
    "mlflow": MlflowRegistry,
}


def registry_from_settings(backend: str, uri: str) -> Registry:
    try:
        build = REGISTRIES[backend]
    except KeyError:
        known = ", ".join(sorted(REGISTRIES))
        raise ValueError(f"registry_backend: unknown backend {backend!r} (one of: {known})") from None
    return build(uri)
