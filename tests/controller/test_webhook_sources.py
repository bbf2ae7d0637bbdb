"""A new webhook source is one class and one registry line: the app mounts it, dedups and labels it.

The class here is the worked example of docs/controller.md (a GitLab-style relay with a token header)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping

from fastapi.testclient import TestClient
from pydantic import SecretStr

from controller.api.controller_app import create_app
from controller.webhooks import registry
from controller.webhooks.common import delivery_id_from, json_object, require_header, require_secret
from controller.webhooks.events import RegistryEvent, WebhookRejected
from controller.webhooks.source import Delivery, ParseContext, WebhookSource, body_key


class GitLabSource:
    name = "gitlab"
    secret_setting = "gitlab"

    def parse(
        self, headers: Mapping[str, str], body: bytes, secret: str | None, ctx: ParseContext
    ) -> Delivery:
        secret = require_secret(secret, "GitLab")
        token = require_header(headers, "X-Gitlab-Token", status=401)
        if not hmac.compare_digest(token.encode(), secret.encode()):
            raise WebhookRejected(401, "X-Gitlab-Token does not match")
        doc = json_object(body)
        event = RegistryEvent(
            source=self.name,
            delivery_id=delivery_id_from(headers, "X-Gitlab-Event-UUID"),
            change="alias_set",
            model=doc.get("model"),
            version=str(doc.get("version")),
            alias=doc.get("alias"),
        )
        return Delivery(event=event, keys=(event.delivery_id, body_key(body)))


def test_every_registered_source_is_a_webhook_source_with_a_route(client):
    paths = {route.path for route in client.app.routes}
    for source in registry.SOURCES:
        assert isinstance(source, WebhookSource)
        assert f"/webhooks/{source.name}" in paths


def test_a_source_added_to_the_registry_is_served(monkeypatch, context, store):
    monkeypatch.setattr(registry, "SOURCES", [*registry.SOURCES, GitLabSource()])
    monkeypatch.setattr("controller.api.webhook_routes.SOURCES", registry.SOURCES)
    context.settings = context.settings.model_copy(update={"webhook_secrets": {"gitlab": SecretStr("tok")}})
    body = json.dumps({"model": "minilm", "version": 3, "alias": "challenger"}).encode()
    headers = {"X-Gitlab-Token": "tok", "X-Gitlab-Event-UUID": "e-1"}
    with TestClient(create_app(context)) as client:
        assert client.post("/webhooks/gitlab", content=body, headers=headers).status_code == 202
        again = client.post(
            "/webhooks/gitlab", content=body, headers={**headers, "X-Gitlab-Event-UUID": "e-2"}
        )
        assert again.json()["status"] == "duplicate"
        assert (
            client.post(
                "/webhooks/gitlab", content=body, headers={**headers, "X-Gitlab-Token": "x"}
            ).status_code
            == 401
        )
        assert (
            'canaryflow_controller_webhooks_received_total{source="gitlab"} 3.0'
            in client.get("/metrics").text
        )
    (item,) = store.inbox()
    assert (item.source, item.delivery_id, item.event["version"]) == ("gitlab", "e-1", "3")
