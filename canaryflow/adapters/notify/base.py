"""The one thing a notification backend does: send one notice, or raise `DeliveryFailed`; and the outbox
that keeps what the channels still owe across a restart.

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


class Outbox(Protocol):
    """Durable rows of (channel, notice), written before a notice is queued (implemented with the
    controller's SQLite state, `controller/notice_outbox.py`, and in the replicas' shared database,
    `controller/shared_outbox.py`). Any method may raise: the notifier then goes on in memory."""

    def describe(self) -> str: ...

    def add(self, channel: str, notice: RolloutNotice, limit: int) -> int | None:
        """The new row's id (>= 1), or None when the channel already holds `limit` notices."""
        ...

    def remove(self, row_id: int) -> None: ...

    def pending(self, channel: str) -> list[tuple[int, RolloutNotice]]:
        """The channel's rows, oldest first."""
        ...

    def channels(self) -> dict[str, int]:
        """Every channel with rows waiting, and how many."""
        ...

    def adopt(self, channel: str) -> list[tuple[int, RolloutNotice]]:
        """Rows another notifier owed and can no longer send (its replica is gone), now this one's,
        oldest first; asked every few seconds by each channel's worker. An outbox only one process
        uses (the SQLite file) answers []: `pending` at the start took everything."""
        ...

    def close(self) -> None: ...
