"""The webhook endpoints and the rollout API through HTTP (FastAPI's test client, the real app)."""

import json
import time

from controller.webhooks.signing import sign_databricks, sign_github
from tests.gitops.github_double import iso

from .conftest import SECRET, signed_mlflow

ALIAS = {"name": "minilm", "alias": "challenger", "version": "2"}


def test_accepted_then_duplicate(client, store):
    headers, body = signed_mlflow(ALIAS, delivery_id="d-1")
    r = client.post("/webhooks/mlflow", content=body, headers=headers)
    assert r.status_code == 202 and r.json() == {"status": "accepted", "delivery_id": "d-1"}
    r = client.post("/webhooks/mlflow", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "duplicate"
    items = store.inbox()
    assert len(items) == 1 and items[0].event["model"] == "minilm" and items[0].event["alias"] == "challenger"


def test_refusals_store_nothing(client, store):
    cases = []
    h, b = signed_mlflow(ALIAS)
    cases.append(({**h, "X-MLflow-Signature": "v1,Zm9yZ2Vk"}, b, 401))
    cases.append(({k: v for k, v in h.items() if k != "X-MLflow-Signature"}, b, 401))
    cases.append((*signed_mlflow(ALIAS, ts=time.time() - 3600), 401))
    cases.append((*signed_mlflow(ALIAS, secret="wrong"), 401))
    cases.append((*signed_mlflow({"name": "Bad_Name", "alias": "challenger", "version": "2"}), 422))
    cases.append((*signed_mlflow({"name": "m"}, entity="registered_model", action="created"), 400))
    cases.append((*signed_mlflow({**ALIAS, "pad": "x" * 70000}), 413))
    h, _ = signed_mlflow(ALIAS)
    bad = b"{not json"
    from controller.webhooks.signing import sign_mlflow

    cases.append(
        (
            {
                **h,
                "X-MLflow-Signature": sign_mlflow(
                    SECRET, h["X-MLflow-Delivery-Id"], h["X-MLflow-Timestamp"], bad
                ),
            },
            bad,
            400,
        )
    )
    for headers, body, status in cases:
        r = client.post("/webhooks/mlflow", content=body, headers=headers)
        assert r.status_code == status, (status, r.text)
        assert r.json()["error"]
    assert store.inbox() == []
    metrics = client.get("/metrics").text
    assert 'canaryflow_controller_webhooks_rejected_total{source="mlflow",status="401"} 4.0' in metrics


def test_oversized_body_without_content_length_is_refused(client, store):
    h, b = signed_mlflow({**ALIAS, "pad": "x" * 70_000})

    def chunks():
        for i in range(0, len(b), 4096):
            yield b[i : i + 4096]

    r = client.post("/webhooks/mlflow", content=chunks(), headers=h)
    assert r.status_code == 413
    assert store.inbox() == []


def test_databricks_and_github_endpoints(client, store):
    doc = {
        "event": "MODEL_VERSION_TRANSITIONED_STAGE",
        "webhook_id": "w1",
        "event_timestamp": int(time.time() * 1000),
        "model_name": "minilm",
        "version": "3",
        "to_stage": "Production",
        "from_stage": "Staging",
    }
    body = json.dumps(doc).encode()
    r = client.post(
        "/webhooks/databricks",
        content=body,
        headers={"X-Databricks-Signature": sign_databricks(SECRET, body)},
    )
    assert r.status_code == 202
    r = client.post("/webhooks/databricks", content=body, headers={"X-Databricks-Signature": "00" * 32})
    assert r.status_code == 401
    gh = json.dumps(
        {
            "action": "submitted",
            "review": {"state": "approved", "submitted_at": iso(), "commit_id": "a" * 40},
            "repository": {"full_name": "o/r"},
            "pull_request": {"number": 3, "html_url": "https://github.com/o/r/pull/3"},
        }
    ).encode()
    headers = {
        "X-GitHub-Event": "pull_request_review",
        "X-GitHub-Delivery": "g-1",
        "X-Hub-Signature-256": sign_github(SECRET, gh),
    }
    assert client.post("/webhooks/github", content=gh, headers=headers).status_code == 202
    assert client.post("/webhooks/github", content=gh, headers=headers).json()["status"] == "duplicate"
    # GitHub does not sign the delivery id: the same signed body under a fresh id is a replay.
    replayed = {**headers, "X-GitHub-Delivery": "g-2"}
    assert client.post("/webhooks/github", content=gh, headers=replayed).json()["status"] == "duplicate"
    assert [i.kind for i in store.inbox()] == ["registry", "approval"]


def test_rollout_api(client, store):
    from controller.rollout.records import RolloutRecord

    now = time.time()
    store.create_rollout(
        RolloutRecord(
            id="minilm-v2-abc",
            model="minilm",
            baseline_version="1",
            canary_version="2",
            created_at=now,
            updated_at=now,
            reason="test",
        )
    )
    assert [r["id"] for r in client.get("/rollouts").json()] == ["minilm-v2-abc"]
    assert client.get("/rollouts", params={"state": "promoted"}).json() == []
    detail = client.get("/rollouts/minilm-v2-abc").json()
    assert detail["phase"] == "pending" and detail["transitions"][0]["to_phase"] == "pending"
    assert client.get("/rollouts/nope").status_code == 404
    assert client.get("/rollouts", params={"state": "bogus"}).status_code == 422
    assert 'canaryflow_controller_rollouts{state="pending"} 1.0' in client.get("/metrics").text
    assert client.get("/healthz").json() == {"status": "ok"}
