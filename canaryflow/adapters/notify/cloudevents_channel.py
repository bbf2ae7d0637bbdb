"""Machines: every notice as a CloudEvent over HTTP (binary or structured content mode).

type `io.canaryflow.rollout.<event>`, subject the rollout id, `data` the notice as JSON (the fields
of `RolloutNotice`, plus its headline and summary). Any 2xx is delivered; anything else is retried.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent

from canaryflow.adapters.notify.base import DeliveryFailed
from canaryflow.kernel.contracts.notifications import RolloutNotice


def to_cloudevent(notice: RolloutNotice, source: str) -> CloudEvent:
    attributes: dict[str, Any] = {
        "type": notice.cloudevent_type,
        "source": source,
        "subject": notice.rollout_id,
        "datacontenttype": "application/json",
        # One id per (rollout, event, step): a retried delivery carries the same id, so receivers dedupe.
        "id": f"{notice.rollout_id}.{notice.event.value}.{notice.step or 0}",
    }
    return CloudEvent(attributes, notice.data())


class CloudEventsChannel:
    def __init__(
        self,
        url: str,
        mode: Literal["binary", "structured"] = "binary",
        source: str = "/canaryflow/controller",
        timeout_s: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("notify.cloudevents_url: must be an http(s) URL")
        self.url, self.mode, self.source = url, mode, source
        self._name = f"cloudevents+{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
        self._client = httpx.Client(timeout=timeout_s)

    def describe(self) -> str:
        return self._name

    def send(self, notice: RolloutNotice) -> None:
        event = to_cloudevent(notice, self.source)
        message = to_binary_event(event) if self.mode == "binary" else to_structured_event(event)
        try:
            answer = self._client.post(self.url, headers=message.headers, content=message.body)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{self._name}: {exc}") from exc
        if not answer.is_success:
            raise DeliveryFailed(f"{self._name}: HTTP {answer.status_code}")
