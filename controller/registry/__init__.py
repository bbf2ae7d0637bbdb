"""Model-registry backends behind the `Registry` port (canaryflow.core.ports)."""

from canaryflow.core.ports import Registry
from controller.registry.mlflow import MlflowRegistry, RegistryError

__all__ = ["MlflowRegistry", "Registry", "RegistryError"]
