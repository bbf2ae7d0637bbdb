"""The webhook sources the controller serves: one line per source, each mounted at /webhooks/<name>."""

from __future__ import annotations

from controller.webhooks.databricks import DatabricksSource
from controller.webhooks.github import GitHubSource
from controller.webhooks.mlflow import MlflowSource
from controller.webhooks.source import WebhookSource

SOURCES: list[WebhookSource] = [
    MlflowSource(),
    DatabricksSource(),
    GitHubSource(),
]


def source_names() -> list[str]:
    return [source.name for source in SOURCES]
