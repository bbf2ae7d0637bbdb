"""MLflow OSS model-registry webhooks (MLflow >= 3.3, SQL backend).

Wire format read from `mlflow/webhooks/delivery.py`: body `{"entity", "action", "timestamp", "data"}`;
headers `X-MLflow-Delivery-Id` (uuid4), `X-MLflow-Timestamp` (unix seconds) and, when the webhook has a
secret, `X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "{delivery_id}.{timestamp}.{body}")>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from controller.webhooks.common import (
    check_fresh,
    delivery_id_from,
    epoch_number,
    json_object,
    require_header,
    require_secret,
    validation_reason,
)
from controller.webhooks.events import RegistryChange, RegistryEvent, WebhookRejected
from controller.webhooks.signing import verify_mlflow
from controller.webhooks.source import Delivery, ParseContext

DELIVERY_HEADER = "X-MLflow-Delivery-Id"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
SIGNATURE_HEADER = "X-MLflow-Signature"

# entity.action -> the change it means; the events a webhook should subscribe to.
EVENTS: dict[str, RegistryChange] = {
    "model_version_alias.created": "alias_set",
    "model_version_tag.set": "tag_set",
    "model_version.created": "version_created",
}


class MlflowSource:
    name = "mlflow"
    secret_setting = "mlflow_webhook_secret"

    def parse(
        self, headers: Mapping[str, str], body: bytes, secret: str | None, ctx: ParseContext
    ) -> Delivery:
        event = parse_mlflow(headers, body, secret, ctx.now_s, ctx.timestamp_tolerance_s)
        return Delivery(event=event, keys=(event.delivery_id,))


def parse_mlflow(
    headers: Mapping[str, str], body: bytes, secret: str | None, now_s: float, tolerance_s: float
) -> RegistryEvent:
    """Verifies one delivery and returns the change it carries; raises WebhookRejected otherwise."""
    secret = require_secret(secret, "MLflow")
    delivery_id = delivery_id_from(headers, DELIVERY_HEADER)
    timestamp = require_header(headers, TIMESTAMP_HEADER)
    signature = require_header(headers, SIGNATURE_HEADER, status=401)
    if not verify_mlflow(secret, delivery_id, timestamp, body, signature):
        raise WebhookRejected(401, f"{SIGNATURE_HEADER} does not match the body")
    check_fresh(epoch_number(timestamp, f"{TIMESTAMP_HEADER} (unix seconds)"), now_s, tolerance_s)
    doc = json_object(body)
    event_name = f"{doc.get('entity')}.{doc.get('action')}"
    change = EVENTS.get(event_name)
    if change is None:
        raise WebhookRejected(400, f"event {event_name!r} is not handled (handled: {', '.join(EVENTS)})")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise WebhookRejected(400, "data: must be an object")
    return _event(delivery_id, change, data)


def _event(delivery_id: str, change: RegistryChange, data: dict[str, Any]) -> RegistryEvent:
    fields: dict[str, Any] = {
        "source": "mlflow",
        "delivery_id": delivery_id,
        "change": change,
        "model": data.get("name"),
        "version": str(data.get("version")) if data.get("version") is not None else None,
    }
    if change == "alias_set":
        fields["alias"] = data.get("alias")
        if not isinstance(fields["alias"], str) or not fields["alias"]:
            raise WebhookRejected(422, "data.alias: missing")
    elif change == "tag_set":
        fields["tag_key"], fields["tag_value"] = data.get("key"), data.get("value")
        if not isinstance(fields["tag_key"], str):
            raise WebhookRejected(422, "data.key: missing")
    try:
        return RegistryEvent(**fields)
    except ValidationError as exc:
        raise WebhookRejected(422, "data." + validation_reason(exc)) from exc
