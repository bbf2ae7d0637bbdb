"""The MLflow model registry (OSS tracking server or Databricks workspace) as a `Registry`."""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


class RegistryError(RuntimeError):
    """The registry refused or failed an operation; the message names model, version and alias."""


class MlflowRegistry:
    """Reads and moves aliases and tags through MLflow's own client (REST under the hood)."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def version_for_alias(self, model: str, alias: str) -> str | None:
        try:
            return str(self._client.get_model_version_by_alias(model, alias).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise RegistryError(f"reading alias {alias!r} of {model!r}: {exc.message}") from exc

    def set_alias(self, model: str, alias: str, version: str) -> None:
        try:
            self._client.set_registered_model_alias(model, alias, version)
        except MlflowException as exc:
            raise RegistryError(f"setting {model}@{alias} -> {version}: {exc.message}") from exc

    def delete_alias(self, model: str, alias: str) -> None:
        """Remove `alias`; an alias already gone is not an error (the step may be re-run)."""
        if self.version_for_alias(model, alias) is None:
            return
        try:
            self._client.delete_registered_model_alias(model, alias)
        except MlflowException as exc:
            raise RegistryError(f"deleting {model}@{alias}: {exc.message}") from exc

    def set_version_tag(self, model: str, version: str, key: str, value: str) -> None:
        try:
            self._client.set_model_version_tag(model, version, key, value)
        except MlflowException as exc:
            raise RegistryError(f"tagging {model}/{version} {key}={value}: {exc.message}") from exc

    def delete_version_tag(self, model: str, version: str, key: str) -> None:
        """Remove a version's tag; a tag already gone is not an error (the step may be re-run)."""
        if key not in self.version_tags(model, version):
            return
        try:
            self._client.delete_model_version_tag(model, version, key)
        except MlflowException as exc:
            raise RegistryError(f"untagging {model}/{version} {key}: {exc.message}") from exc

    def version_tags(self, model: str, version: str) -> dict[str, str]:
        try:
            return dict(self._client.get_model_version(model, version).tags)
        except MlflowException as exc:
            raise RegistryError(f"reading {model}/{version}: {exc.message}") from exc

    def model_uri(self, model: str, version: str) -> str:
        """The URI pinned to one version (never an alias): what manifests and servers load."""
        return f"models:/{model}/{version}"

    def version_source(self, model: str, version: str) -> str:
        """Where the version's artifacts are (`source`, what servers other than canaryflow's download);
        a source that is itself a logged model (`models:/m-...`, MLflow 3) is that model's location."""
        try:
            source = str(self._client.get_model_version(model, version).source)
            if source.startswith("models:/m-"):
                source = str(self._client.get_logged_model(source.removeprefix("models:/")).artifact_location)
        except MlflowException as exc:
            raise RegistryError(f"reading {model}/{version}'s source: {exc.message}") from exc
        return source
