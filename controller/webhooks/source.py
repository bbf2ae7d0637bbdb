"""The interface of a webhook source: one small class per sender, listed in `registry.SOURCES`.

The app mounts `POST /webhooks/<name>` for every registered source and does the rest the same way for
all of them: bound the body, look up the source's secret, call `parse`, store the event in the inbox
under every key in `Delivery.keys` (any key seen before makes it a duplicate), answer. So adding a sender
is one file implementing `WebhookSource` plus one line in the registry; see docs/controller.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from controller.webhooks.events import ApprovalEvent, RegistryEvent


@dataclass(frozen=True)
class ParseContext:
    """What a parser may need besides the delivery: the time and the replay policy."""

    now_s: float
    timestamp_tolerance_s: float
    max_event_age_s: float


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: its event (None for a ping, answered and not stored) and its replay keys.

    `keys[0]` is the delivery id shown to the sender; every key is remembered, so a capture replayed
    under a fresh (unsigned) delivery id is still recognised by the digest of its signed body."""

    event: RegistryEvent | ApprovalEvent | None
    keys: tuple[str, ...]

    @property
    def delivery_id(self) -> str:
        return self.keys[0]


def body_key(body: bytes) -> str:
    """The replay key of a signed body: identical bytes are the same delivery, whatever its id."""
    return "sha256:" + hashlib.sha256(body).hexdigest()[:40]


@runtime_checkable
class WebhookSource(Protocol):
    """One webhook sender. `name` is its route (`/webhooks/<name>`), metrics label and inbox source;
    `secret_setting` the controller setting holding its shared secret (a field of `ControllerSettings`,
    else a key of `ControllerSettings.webhook_secrets`)."""

    @property
    def name(self) -> str: ...

    @property
    def secret_setting(self) -> str: ...

    def parse(
        self, headers: Mapping[str, str], body: bytes, secret: str | None, ctx: ParseContext
    ) -> Delivery:
        """Checks the signature over the raw body and headers first, then freshness, then parses.

        Raises `WebhookRejected` (with the HTTP status to answer) for anything it refuses."""
        ...
