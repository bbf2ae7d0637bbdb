"""Checks every sender's parser shares: body size, JSON object, header presence, timestamp window."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from canaryflow.kernel.errors import first_error
from canaryflow.kernel.guarded_input import InputRefused, parse_json
from controller.webhooks.events import WebhookRejected

_DELIVERY_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def require_secret(secret: str | None, sender: str) -> str:
    """A sender with no secret configured is refused outright: an unsigned delivery proves nothing."""
    if not secret:
        raise WebhookRejected(
            401, f"no {sender} webhook secret configured on the controller; unsigned deliveries are refused"
        )
    return secret


def require_header(headers: Mapping[str, str], name: str, status: int = 400) -> str:
    value = headers.get(name) or headers.get(name.lower())
    if not value:
        raise WebhookRejected(status, f"missing header {name}")
    return value


def delivery_id_from(headers: Mapping[str, str], name: str) -> str:
    value = require_header(headers, name)
    if not _DELIVERY_ID.fullmatch(value):
        raise WebhookRejected(400, f"header {name}: not a delivery id (letters, digits, '.:_-', at most 128)")
    return value


def check_fresh(timestamp_s: float, now_s: float, tolerance_s: float) -> None:
    """Refuses a delivery signed too long ago (or in the future): a replayed capture is stale. A time
    that is not a finite number (NaN compares false with everything) is refused, never let through."""
    if not math.isfinite(timestamp_s):
        raise WebhookRejected(400, f"timestamp {timestamp_s!r} is not a finite number")
    if abs(now_s - timestamp_s) > tolerance_s:
        raise WebhookRejected(
            401,
            f"stale delivery: timestamp {timestamp_s:.0f} is {now_s - timestamp_s:+.0f} s from now "
            f"(tolerance {tolerance_s:.0f} s)",
        )


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, through the guarded reader (encoding, depth, integer length, NaN):
    every way a body can be hostile is a 400, never a 500. Its size was bounded on receipt."""
    try:
        doc = parse_json(body, "body", max_bytes=None)
    except InputRefused as exc:
        raise WebhookRejected(400, str(exc)) from exc
    if not isinstance(doc, dict):
        raise WebhookRejected(400, "body must be a JSON object")
    return doc


def epoch_number(value: Any, where: str, scale: float = 1.0) -> float:
    """A JSON or header time as finite seconds (`scale`: units per second); a bool, NaN, infinity or a
    number too large for a float (a 400-digit integer) is a 400 naming `where`, never a 500."""
    if isinstance(value, str):
        value = value.strip()
        if not (0 < len(value) <= 20 and value.isascii() and value.isdigit()):
            raise WebhookRejected(400, f"{where}: not a unix time")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WebhookRejected(400, f"{where}: not a unix time")
    try:
        seconds = float(value) / scale
    except OverflowError as exc:
        raise WebhookRejected(400, f"{where}: not a unix time (out of range)") from exc
    if not math.isfinite(seconds):
        raise WebhookRejected(400, f"{where}: not a finite number")
    return seconds


def validation_reason(exc: ValidationError) -> str:
    """One line naming the first offending field, e.g. "model: 'My Model' is not a valid ..."."""
    return first_error(exc, "body")
