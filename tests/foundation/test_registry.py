"""The MLflow registry adapter against a real MLflow server: aliases move, tags stick, errors name
what failed."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from canaryflow.adapters.registry import MlflowRegistry, RegistryError
from canaryflow.app.local.mlflow_server import MlflowServer


@pytest.fixture(scope="module")
def registry_with_versions(mlflow_server: MlflowServer) -> MlflowRegistry:
    client = MlflowClient(mlflow_server.tracking_uri)
    client.create_registered_model("registry-adapter")
    # Versions need no weights to carry aliases and tags: a remote source is accepted as it is.
    for _ in range(2):
        client.create_model_version("registry-adapter", source="s3://models/registry-adapter")
    return MlflowRegistry(mlflow_server.tracking_uri)


def test_alias_moves_and_deletes(registry_with_versions: MlflowRegistry) -> None:
    reg = registry_with_versions
    reg.set_alias("registry-adapter", "champion", "1")
    assert reg.version_for_alias("registry-adapter", "champion") == "1"
    reg.set_alias("registry-adapter", "champion", "2")
    assert reg.version_for_alias("registry-adapter", "champion") == "2"
    reg.delete_alias("registry-adapter", "champion")
    assert reg.version_for_alias("registry-adapter", "champion") is None
    reg.delete_alias("registry-adapter", "champion")  # idempotent: a re-run step must not fail


def test_tags_and_errors(registry_with_versions: MlflowRegistry) -> None:
    reg = registry_with_versions
    reg.set_version_tag("registry-adapter", "1", "canaryflow.rejected", "true")
    assert reg.version_tags("registry-adapter", "1")["canaryflow.rejected"] == "true"
    reg.delete_version_tag("registry-adapter", "1", "canaryflow.rejected")
    assert "canaryflow.rejected" not in reg.version_tags("registry-adapter", "1")
    reg.delete_version_tag("registry-adapter", "1", "canaryflow.rejected")  # idempotent, like delete_alias
    assert reg.model_uri("registry-adapter", "2") == "models:/registry-adapter/2"
    with pytest.raises(RegistryError, match="registry-adapter/99"):
        reg.set_version_tag("registry-adapter", "99", "k", "v")
    assert reg.version_for_alias("no-such-model", "champion") is None


def test_registry_backend_is_chosen_by_name_and_an_unknown_one_is_refused() -> None:
    from pydantic import ValidationError

    from canaryflow.adapters.registry.factory import registry_from_settings
    from controller.controller_settings import ControllerSettings

    assert type(registry_from_settings("mlflow", "http://127.0.0.1:1")).__name__ == "MlflowRegistry"
    with pytest.raises(ValueError, match="registry_backend"):
        registry_from_settings("sagemaker", "x")
    with pytest.raises(ValidationError, match="unknown registry backend"):
        ControllerSettings(registry_backend="sagemaker")
