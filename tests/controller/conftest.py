"""Controller fixtures: a store on disk, the app wired to it, and signed-delivery helpers."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from controller.api.api_context import ControllerContext
from controller.api.controller_app import create_app
from controller.controller_settings import ControllerSettings
from controller.observability import ControllerMetrics
from controller.rollout.store import RolloutStore
from controller.webhooks.signing import sign_mlflow

SECRET = "controller-test-secret"


@pytest.fixture
def settings(tmp_path) -> ControllerSettings:
    return ControllerSettings(
        db_path=tmp_path / "controller.db",
        mlflow_webhook_secret=SecretStr(SECRET),
        databricks_webhook_secret=SecretStr(SECRET),
        github_webhook_secret=SecretStr(SECRET),
        max_body_bytes=64_000,
    )


@pytest.fixture
def store(settings):
    s = RolloutStore(settings.db_path)
    yield s
    s.close()


@pytest.fixture
def context(settings, store) -> ControllerContext:
    return ControllerContext(settings=settings, store=store, metrics=ControllerMetrics(store))


@pytest.fixture
def client(context):
    with TestClient(create_app(context)) as c:
        yield c


def signed_mlflow(
    data, entity="model_version_alias", action="created", delivery_id=None, ts=None, secret=SECRET
):
    body = json.dumps(
        {"entity": entity, "action": action, "timestamp": "2026-11-23T10:00:00+00:00", "data": data}
    ).encode()
    did = delivery_id or str(uuid.uuid4())
    ts_s = str(int(ts if ts is not None else time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": did,
        "X-MLflow-Timestamp": ts_s,
        "X-MLflow-Signature": sign_mlflow(secret, did, ts_s, body),
    }
    return headers, body
