"""Each sender's parser against its own wire format: signature, freshness, payload, model names."""

import json
import time

import pytest

from controller.webhooks.databricks import parse_databricks
from controller.webhooks.events import WebhookRejected
from controller.webhooks.github import parse_github
from controller.webhooks.mlflow import parse_mlflow
from controller.webhooks.signing import sign_databricks, sign_github, sign_mlflow

SECRET = "s3cret"
NOW = 1_800_000_000.0


def mlflow_delivery(
    data, entity="model_version_alias", action="created", ts=NOW, did="0b9c-uuid", secret=SECRET
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {"entity": entity, "action": action, "timestamp": "2026-11-23T10:00:00+00:00", "data": data}
    ).encode()
    ts_s = str(int(ts))
    headers = {
        "X-MLflow-Delivery-Id": did,
        "X-MLflow-Timestamp": ts_s,
        "X-MLflow-Signature": sign_mlflow(secret, did, ts_s, body),
    }
    return headers, body


def test_signature_matches_mlflows_own_implementation():
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = '{"entity": "model_version_alias", "data": {"name": "m"}}'
    assert sign_mlflow("k", "id-1", "123", body.encode()) == _generate_hmac_signature(
        "k", "id-1", "123", body
    )


def test_mlflow_alias_created():
    ev = parse_mlflow(
        *mlflow_delivery({"name": "minilm", "alias": "challenger", "version": "2"}), SECRET, NOW, 300
    )
    assert (ev.change, ev.model, ev.version, ev.alias) == ("alias_set", "minilm", "2", "challenger")


@pytest.mark.parametrize(
    ("mutate", "status", "reason"),
    [
        (lambda h, b: ({**h, "X-MLflow-Signature": "v1,AAAA"}, b), 401, "does not match"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "X-MLflow-Signature"}, b), 401, "missing header"),
        (lambda h, b: (h, b.replace(b'"2"', b'"3"')), 401, "does not match"),
        (lambda h, b: ({**h, "X-MLflow-Delivery-Id": "other"}, b), 401, "does not match"),
        (lambda h, b: ({**h, "X-MLflow-Delivery-Id": "bad id!"}, b), 400, "delivery id"),
    ],
)
def test_mlflow_refusals(mutate, status, reason):
    headers, body = mlflow_delivery({"name": "minilm", "alias": "challenger", "version": "2"})
    with pytest.raises(WebhookRejected) as err:
        changed_headers, changed_body = mutate(headers, body)
        parse_mlflow(changed_headers, changed_body, SECRET, NOW, 300)
    assert err.value.status == status and reason in err.value.reason


def test_mlflow_stale_and_future_timestamps_refused():
    for ts in (NOW - 301, NOW + 301):
        with pytest.raises(WebhookRejected, match="stale") as err:
            parse_mlflow(
                *mlflow_delivery({"name": "m", "alias": "a", "version": "1"}, ts=ts), SECRET, NOW, 300
            )
        assert err.value.status == 401
    parse_mlflow(
        *mlflow_delivery({"name": "m", "alias": "a", "version": "1"}, ts=NOW - 299), SECRET, NOW, 300
    )


def test_mlflow_unknown_event_and_bad_names():
    with pytest.raises(WebhookRejected, match="not handled") as err:
        parse_mlflow(*mlflow_delivery({"name": "m"}, entity="prompt", action="created"), SECRET, NOW, 300)
    assert err.value.status == 400
    with pytest.raises(WebhookRejected, match="not a valid Kubernetes name") as err:
        parse_mlflow(*mlflow_delivery({"name": "My Model", "alias": "c", "version": "1"}), SECRET, NOW, 300)
    assert err.value.status == 422 and err.value.reason.startswith("data.model")
    with pytest.raises(WebhookRejected, match="version number"):
        parse_mlflow(*mlflow_delivery({"name": "m", "alias": "c", "version": "latest"}), SECRET, NOW, 300)


def test_mlflow_without_configured_secret_refuses():
    with pytest.raises(WebhookRejected) as err:
        parse_mlflow(*mlflow_delivery({"name": "m", "alias": "c", "version": "1"}), None, NOW, 300)
    assert err.value.status == 401


def test_mlflow_tag_and_version_created():
    ev = parse_mlflow(
        *mlflow_delivery(
            {"name": "m", "version": "4", "key": "canaryflow.canary", "value": "true"},
            entity="model_version_tag",
            action="set",
        ),
        SECRET,
        NOW,
        300,
    )
    assert (ev.change, ev.tag_key, ev.tag_value) == ("tag_set", "canaryflow.canary", "true")
    ev = parse_mlflow(
        *mlflow_delivery(
            {"name": "m", "version": "4", "source": "models:/x"}, entity="model_version", action="created"
        ),
        SECRET,
        NOW,
        300,
    )
    assert ev.change == "version_created"


def databricks(doc, secret=SECRET) -> tuple[dict[str, str], bytes]:
    body = json.dumps(doc).encode()
    return {"X-Databricks-Signature": sign_databricks(secret, body)}, body


def test_databricks_stage_transition():
    doc = {
        "event": "MODEL_VERSION_TRANSITIONED_STAGE",
        "webhook_id": "c55",
        "event_timestamp": int(NOW * 1000),
        "model_name": "minilm",
        "version": "8",
        "to_stage": "Production",
        "from_stage": "Staging",
        "text": "Registered model 'minilm' version 8 transitioned from Staging to Production.",
    }
    ev = parse_databricks(*databricks(doc), SECRET, NOW, 300)
    assert (ev.change, ev.version, ev.to_stage) == ("stage_transitioned", "8", "Production")
    again = parse_databricks(*databricks(doc), SECRET, NOW, 300)
    assert again.delivery_id == ev.delivery_id  # a retried delivery is recognised


def test_databricks_refusals():
    doc = {
        "event": "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
        "event_timestamp": int(NOW * 1000),
        "model_name": "minilm",
        "version": "8",
    }
    assert parse_databricks(*databricks(doc), SECRET, NOW, 300).to_stage == "Production"
    with pytest.raises(WebhookRejected, match="does not match"):
        parse_databricks(*databricks(doc, secret="other"), SECRET, NOW, 300)
    with pytest.raises(WebhookRejected, match="stale"):
        parse_databricks(*databricks({**doc, "event_timestamp": int((NOW - 3600) * 1000)}), SECRET, NOW, 300)
    with pytest.raises(WebhookRejected, match="not handled"):
        parse_databricks(*databricks({**doc, "event": "COMMENT_CREATED"}), SECRET, NOW, 300)
    with pytest.raises(WebhookRejected, match="model_name") as err:
        parse_databricks(*databricks({**doc, "model_name": "../etc"}), SECRET, NOW, 300)
    assert err.value.status == 422


def github(
    event, doc, did="72d3162e-cc78-11e3-81ab-4c9367dc0958", secret=SECRET
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(doc).encode()
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": did,
        "X-Hub-Signature-256": sign_github(secret, body),
    }, body


PR = {"number": 7, "html_url": "https://github.com/org/gitops/pull/7", "merged": False}
REPO = {"full_name": "org/gitops"}


def test_github_review_and_merge():
    ev = parse_github(
        *github(
            "pull_request_review",
            {
                "action": "submitted",
                "review": {"state": "approved"},
                "pull_request": PR,
                "repository": REPO,
                "sender": {"login": "alice"},
            },
        ),
        SECRET,
    )
    assert (ev.outcome, ev.pr_number, ev.actor) == ("approved", 7, "alice")
    ev = parse_github(
        *github(
            "pull_request_review",
            {
                "action": "submitted",
                "review": {"state": "changes_requested"},
                "pull_request": PR,
                "repository": REPO,
            },
        ),
        SECRET,
    )
    assert ev.outcome == "rejected"
    ev = parse_github(
        *github(
            "pull_request", {"action": "closed", "pull_request": {**PR, "merged": True}, "repository": REPO}
        ),
        SECRET,
    )
    assert ev.outcome == "approved"
    ev = parse_github(
        *github("pull_request", {"action": "closed", "pull_request": PR, "repository": REPO}), SECRET
    )
    assert ev.outcome == "rejected"


def test_github_refusals():
    headers, body = github("pull_request", {"action": "opened", "pull_request": PR, "repository": REPO})
    with pytest.raises(WebhookRejected, match="does not match"):
        parse_github({**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}, body, SECRET)
    with pytest.raises(WebhookRejected, match="not handled"):
        parse_github(*github("push", {"ref": "main"}), SECRET)
    with pytest.raises(WebhookRejected, match=r"pull_request\.number"):
        parse_github(*github("pull_request", {"action": "closed", "repository": REPO}), SECRET)
    for number in (True, 0, -7, 7.0, "7"):
        with pytest.raises(WebhookRejected, match=r"pull_request\.number") as err:
            parse_github(
                *github(
                    "pull_request",
                    {"action": "closed", "pull_request": {**PR, "number": number}, "repository": REPO},
                ),
                SECRET,
            )
        assert err.value.status == 422


def test_github_event_keeps_what_binds_it_and_refuses_old_reviews():
    doc = {
        "action": "submitted",
        "review": {
            "state": "approved",
            "user": {"login": "alice"},
            "commit_id": "c" * 40,
            "submitted_at": "2026-11-23T12:00:00Z",
        },
        "pull_request": {**PR, "head": {"sha": "d" * 40}},
        "repository": REPO,
        "sender": {"login": "mallory"},
    }
    at = 1795435200.0  # 2026-11-23T12:00:00Z
    ev = parse_github(*github("pull_request_review", doc), SECRET, now_s=at + 10, max_age_s=3600)
    assert ev is not None
    assert (ev.actor, ev.head_sha, ev.at, ev.repository) == ("alice", "c" * 40, at, "org/gitops")
    with pytest.raises(WebhookRejected, match="stale delivery") as err:
        parse_github(*github("pull_request_review", doc), SECRET, now_s=at + 3601, max_age_s=3600)
    assert err.value.status == 401
    with pytest.raises(WebhookRejected, match="stale delivery"):
        parse_github(*github("pull_request_review", doc), SECRET, now_s=at - 600, max_age_s=3600)
    late = {**doc, "review": {**doc["review"], "submitted_at": "yesterday"}}
    with pytest.raises(WebhookRejected, match="submitted_at"):
        parse_github(*github("pull_request_review", late), SECRET, now_s=at, max_age_s=3600)
    assert parse_github(*github("ping", {"zen": "Design for failure."}), SECRET) is None


def test_now_is_used_by_default_tolerance():
    now = time.time()
    parse_mlflow(*mlflow_delivery({"name": "m", "alias": "c", "version": "1"}, ts=now), SECRET, now, 300)
