"""The one thing a notification backend does: send one notice, or raise `DeliveryFailed`.

Backends are small and synchronous; retries, backoff, queueing and threads live in `delivery.py`, once
for all of them. A backend names itself without its secret (`describe`), for logs.
"""

from __future__ import annotations

from typing import Protocol

from canaryflow.kernel.contracts.notifications import RolloutNotice


class DeliveryFailed(RuntimeError):
    """The channel did not take the notice (unreachable, refused); the message says why."""


class Channel(Protocol):
    def describe(self) -> str: ...

    def send(self, notice: RolloutNotice) -> None: ...
