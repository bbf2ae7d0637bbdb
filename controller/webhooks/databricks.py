"""Databricks workspace model-registry webhooks (HTTP registry webhooks with a secret).

Payload fields per the Databricks documentation: `event`, `webhook_id`, `event_timestamp` (ms),
`model_name`, `version`, `to_stage`, `from_stage`, `text`. Signature: `X-Databricks-Signature` = hex
HMAC-SHA256 of the raw body with the webhook's secret. Databricks sends no delivery id, so the digest of
the signed body stands in for one: a retried delivery is byte-identical and is recognised. A timestamp
that is not a finite number (`NaN`, a 400-digit integer) is refused: NaN would pass any freshness test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from controller.webhooks.common import (
    check_fresh,
    epoch_number,
    json_object,
    require_header,
    require_secret,
    validation_reason,
)
from controller.webhooks.events import RegistryChange, RegistryEvent, WebhookRejected
from controller.webhooks.signing import verify_databricks
from controller.webhooks.source import Delivery, ParseContext, body_key

SIGNATURE_HEADER = "X-Databricks-Signature"

_STAGES = ("STAGING", "PRODUCTION", "ARCHIVED")
EVENTS: dict[str, RegistryChange] = {
    "MODEL_VERSION_CREATED": "version_created",
    "MODEL_VERSION_TRANSITIONED_STAGE": "stage_transitioned",
    "TRANSITION_REQUEST_CREATED": "transition_requested",
    **{f"MODEL_VERSION_TRANSITIONED_TO_{s}": "stage_transitioned" for s in _STAGES},
    **{f"TRANSITION_REQUEST_TO_{s}_CREATED": "transition_requested" for s in _STAGES},
}


def parse_databricks(
    headers: Mapping[str, str], body: bytes, secret: str | None, now_s: float, tolerance_s: float
) -> RegistryEvent:
    secret = require_secret(secret, "Databricks")
    signature = require_header(headers, SIGNATURE_HEADER, status=401)
    if not verify_databricks(secret, body, signature):
        raise WebhookRejected(401, f"{SIGNATURE_HEADER} does not match the body")
    doc = json_object(body)
    event_name = doc.get("event")
    change = EVENTS.get(event_name) if isinstance(event_name, str) else None
    if change is None:
        raise WebhookRejected(400, f"event {event_name!r} is not handled")
    ts_ms = doc.get("event_timestamp")
    if isinstance(ts_ms, str):
        raise WebhookRejected(400, "event_timestamp: must be epoch milliseconds")
    check_fresh(epoch_number(ts_ms, "event_timestamp (epoch milliseconds)", 1000.0), now_s, tolerance_s)
    return _event(body_key(body), change, doc)


class DatabricksSource:
    """Databricks sends no delivery id: the digest of the signed body is the id and the replay key."""

    name = "databricks"
    secret_setting = "databricks_webhook_secret"

    def parse(
        self, headers: Mapping[str, str], body: bytes, secret: str | None, ctx: ParseContext
    ) -> Delivery:
        event = parse_databricks(headers, body, secret, ctx.now_s, ctx.timestamp_tolerance_s)
        return Delivery(event=event, keys=(event.delivery_id,))


def _event(delivery_id: str, change: RegistryChange, doc: dict[str, Any]) -> RegistryEvent:
    to_stage = doc.get("to_stage")
    name = str(doc.get("event"))
    if to_stage is None and name.startswith(("MODEL_VERSION_TRANSITIONED_TO_", "TRANSITION_REQUEST_TO_")):
        to_stage = next(s for s in _STAGES if s in name).capitalize()
    try:
        return RegistryEvent(
            source="databricks",
            delivery_id=delivery_id,
            change=change,
            model=doc.get("model_name"),
            version=str(doc.get("version")) if doc.get("version") is not None else None,
            to_stage=to_stage,
            from_stage=doc.get("from_stage"),
        )
    except ValidationError as exc:
        raise WebhookRejected(422, validation_reason(exc).replace("model:", "model_name:")) from exc
