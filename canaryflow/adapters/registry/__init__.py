"""Model-registry backends behind the `Registry` port (canaryflow.kernel.ports)."""

from canaryflow.adapters.registry.mlflow import MlflowRegistry, RegistryError
from canaryflow.kernel.ports import Registry

__all__ = ["MlflowRegistry", "Registry", "RegistryError"]
