"""Delivery off the reconcile loop: one worker thread and one bounded queue per channel.

`notify` only enqueues (never blocks, never raises): a slow or dead Slack must not hold a rollout. Each
channel has its own worker so that one failing channel does not delay the others; a failed send is
retried with exponential backoff and jitter, up to `max_attempts`. A full queue drops the new notice
and says so in the log (a channel that is down for hours must not grow the controller's memory).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from canaryflow.adapters.notify.base import Channel
from canaryflow.kernel.contracts.notifications import NoticeEvent, RolloutNotice

log = logging.getLogger("canaryflow.notify")
_STOP = object()


@dataclass
class ChannelStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0


class _Worker:
    def __init__(
        self, channel: Channel, queue_size: int, max_attempts: int, backoff_s: float, max_backoff_s: float
    ) -> None:
        self.channel = channel
        self.max_attempts, self.backoff_s, self.max_backoff_s = max_attempts, backoff_s, max_backoff_s
        self.stats = ChannelStats()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"notify-{channel.describe()}", daemon=True)
        self._thread.start()

    def offer(self, notice: RolloutNotice) -> None:
        try:
            self._queue.put_nowait(notice)
        except queue.Full:
            self.stats.dropped += 1
            log.warning(
                "notification dropped: queue full",
                extra={"fields": {"channel": self.channel.describe(), "rollout": notice.rollout_id}},
            )

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, RolloutNotice)
            self._deliver(item)

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)

    def _deliver(self, notice: RolloutNotice) -> None:
        fields = {"channel": self.channel.describe(), "rollout": notice.rollout_id, "event": notice.event}
        for attempt in range(self.max_attempts):
            try:
                self.channel.send(notice)
            except Exception as exc:  # every backend error is worth a retry; the last one is logged
                if attempt + 1 == self.max_attempts or self._abort.wait(self._delay(attempt)):
                    self.stats.failed += 1
                    log.error("notification not delivered", extra={"fields": {**fields, "error": str(exc)}})
                    return
                self.stats.retries += 1
                continue
            self.stats.delivered += 1
            log.info("notification delivered", extra={"fields": fields})
            return

    def close(self, timeout_s: float) -> None:
        """Lets the queue drain for up to `timeout_s`, then cuts the retries short."""
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout_s)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(1.0)


class BackgroundNotifier:
    """The `Notifier` port over any number of channels."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        events: Iterable[NoticeEvent] = tuple(NoticeEvent),
        queue_size: int = 100,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.events = frozenset(events)
        self._workers = [_Worker(c, queue_size, max_attempts, backoff_s, max_backoff_s) for c in channels]

    def notify(self, notice: RolloutNotice) -> None:
        if notice.event not in self.events:
            return
        for worker in self._workers:
            try:
                worker.offer(notice)
            except Exception as exc:  # the port's promise: the reconcile loop never sees a notifier error
                log.error("notification not queued", extra={"fields": {"error": repr(exc)}})

    def close(self, timeout_s: float = 5.0) -> None:
        for worker in self._workers:
            worker.close(timeout_s)

    def stats(self) -> dict[str, ChannelStats]:
        return {w.channel.describe(): w.stats for w in self._workers}
