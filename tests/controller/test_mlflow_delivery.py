"""Real deliveries from a real MLflow server: the webhook is created through MLflow's own client, an alias
is set, and the rollout appears from that delivery, its signature verified with the shared secret."""

from __future__ import annotations

import uuid

import httpx
from mlflow.tracking import MlflowClient
from pydantic import SecretStr

from canaryflow.adapters.registry import MlflowRegistry
from canaryflow.app.wiring import assemble_controller
from controller.controller_settings import ControllerSettings
from controller.rollout.store import RolloutStore
from workflows.local.runner import LocalRunner

from .harness import Steps, policy
from .live import LiveController, wait_for
from .process import API_TOKEN, AUTH

SECRET = "mlflow-shared-secret"


def test_alias_set_in_mlflow_starts_a_rollout(mlflow_server, tmp_path):
    model = f"minilm-{uuid.uuid4().hex[:6]}"
    client = MlflowClient(mlflow_server.tracking_uri)
    client.create_registered_model(model)
    for _ in range(2):
        client.create_model_version(model, source=f"s3://models/{model}")
    settings = ControllerSettings(
        db_path=tmp_path / "c.db",
        mlflow_webhook_secret=SecretStr(SECRET),
        reconcile_interval_s=0.2,
        api_token=SecretStr(API_TOKEN),
    )
    store = RolloutStore(settings.db_path)
    pol = policy(5, 50)
    steps = Steps({"analyze-5": ["waiting for samples"]})
    engine = LocalRunner(settings.db_path, steps, lambda name: pol)
    service = assemble_controller(
        settings,
        store,
        engine,
        MlflowRegistry(mlflow_server.tracking_uri),
        workflow_link=engine.link,
        policy_loader=lambda name: pol,
    )
    with LiveController(service) as live:
        url = f"{live.url}/webhooks/mlflow"
        good = client.create_webhook(
            name=f"cf-{model}", url=url, events=["model_version_alias.created"], secret=SECRET
        )
        # A second webhook with the wrong secret: its deliveries must be refused and change nothing.
        bad = client.create_webhook(
            name=f"cf-bad-{model}", url=url, events=["model_version_alias.created"], secret="not-the-secret"
        )
        client.set_registered_model_alias(model, "champion", "1")
        wait_for(
            lambda: any(i.outcome and "starts nothing" in i.outcome for i in store.inbox()),
            what="the champion event to be recorded as starting nothing",
        )
        client.set_registered_model_alias(model, "challenger", "2")
        rollout = wait_for(lambda: next(iter(store.rollouts(model=model)), None), what="a rollout")
        assert (rollout.baseline_version, rollout.canary_version) == ("1", "2")
        assert rollout.trigger.startswith("mlflow:")
        wait_for(
            lambda: getattr(store.get(rollout.id), "phase", None) == "canary", what="the rollout to start"
        )
        wait_for(
            lambda: getattr(store.get(rollout.id), "waiting_reason", None) == "waiting for samples",
            what="analysis to wait",
        )
        metrics = httpx.get(f"{live.url}/metrics").text
        wait_for(lambda: 'status="401"' in httpx.get(f"{live.url}/metrics").text, what="a refused delivery")
        inbox = store.inbox()
        assert len(inbox) == 2  # the refused deliveries stored nothing
        assert len(store.rollouts(model=model)) == 1
        detail = httpx.get(f"{live.url}/rollouts/{rollout.id}", headers=AUTH).json()
        assert detail["links"]["workflow"].endswith(f"#canaryflow-{rollout.id}")
        assert 'canaryflow_controller_rollouts{state="canary"} 1.0' in metrics
        client.delete_webhook(good.webhook_id)
        client.delete_webhook(bad.webhook_id)


def test_databricks_stage_transition_starts_a_rollout_against_the_champion(mlflow_server, tmp_path):
    import json
    import time

    from fastapi.testclient import TestClient

    from controller.webhooks.signing import sign_databricks

    model = f"dbx-{uuid.uuid4().hex[:6]}"
    client = MlflowClient(mlflow_server.tracking_uri)
    client.create_registered_model(model)
    for _ in range(3):
        client.create_model_version(model, source=f"s3://models/{model}")
    client.set_registered_model_alias(model, "champion", "2")
    settings = ControllerSettings(db_path=tmp_path / "c.db", databricks_webhook_secret=SecretStr(SECRET))
    store = RolloutStore(settings.db_path)
    pol = policy(5)
    service = assemble_controller(
        settings,
        store,
        LocalRunner(settings.db_path, Steps(), lambda n: pol),
        MlflowRegistry(mlflow_server.tracking_uri),
        policy_loader=lambda n: pol,
    )
    http = TestClient(service.app)

    def send(doc):
        body = json.dumps(doc).encode()
        return http.post(
            "/webhooks/databricks",
            content=body,
            headers={"X-Databricks-Signature": sign_databricks(SECRET, body)},
        )

    base = {"webhook_id": "w1", "event_timestamp": int(time.time() * 1000), "model_name": model}
    # A transition request and a move to Staging start nothing; the move to Production does.
    assert (
        send(
            {
                **base,
                "event": "TRANSITION_REQUEST_CREATED",
                "version": "3",
                "to_stage": "Production",
                "from_stage": "Staging",
            }
        ).status_code
        == 202
    )
    assert (
        send(
            {
                **base,
                "event": "MODEL_VERSION_TRANSITIONED_STAGE",
                "version": "3",
                "to_stage": "Staging",
                "from_stage": "None",
            }
        ).status_code
        == 202
    )
    assert (
        send(
            {
                **base,
                "event": "MODEL_VERSION_TRANSITIONED_STAGE",
                "version": "3",
                "to_stage": "Production",
                "from_stage": "Staging",
            }
        ).status_code
        == 202
    )
    # Each acknowledged delivery is settled at once on the reconciler's workers.
    service.reconciler.process_inbox()
    wait_for(lambda: all(i.processed_at for i in store.inbox()), what="the inbox settled")
    rollouts = store.rollouts(model=model)
    assert [(r.baseline_version, r.canary_version, r.trigger.split(":")[0]) for r in rollouts] == [
        ("2", "3", "databricks")
    ]
    outcomes = [i.outcome for i in store.inbox()]
    assert sum("starts nothing" in (o or "") for o in outcomes) == 2
