"""Delivery off the reconcile loop: one worker thread and one bounded queue per channel.

`notify` only enqueues (never blocks, never raises): a slow or dead Slack must not hold a rollout. Each
channel has its own worker so that one failing channel does not delay the others; a failed send is
retried with exponential backoff and jitter, up to `max_attempts`. A full queue drops the new notice
and says so in the log (a channel that is down for hours must not grow the controller's memory).

With an outbox (`base.Outbox`, a SQLite file beside the controller's store) each notice is written
there before it is queued and removed when it is delivered or given up on; a new notifier on the same
file queues again what a killed one left. The outbox's bound is the queue's (`queue_size` per channel,
the notice being sent included). The first outbox error (a full disk, a broken file) is logged once and
delivery goes on from memory, as without one: the reconcile loop must never wait on or fail because of
the notifier's bookkeeping. Since that is otherwise silent, `durable` and each channel's `memory_only`
count say so (the controller exports them on /metrics).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from canaryflow.adapters.notify.base import Channel, Outbox
from canaryflow.kernel.contracts.notifications import NoticeDelivery, NoticeEvent, RolloutNotice

log = logging.getLogger("canaryflow.notify")
_STOP = object()
_FULL = -1  # `_Durable.add`: the channel's outbox holds `queue_size` notices (outbox row ids start at 1)
T = TypeVar("T")
Settled = Callable[[NoticeDelivery], None]  # told what became of each notice (the controller's log)


@dataclass
class ChannelStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    resumed: int = 0  # taken over from the outbox at start
    kept: int = 0  # left in the outbox at close, for the next start
    memory_only: int = 0  # queued without an outbox row (none configured, or it failed): lost on a kill


class _Durable:
    """The outbox as the workers use it: the first error switches it off for good (logged once), and every
    call answers None from then on, which the workers read as "in memory only"."""

    def __init__(self, open_outbox: Callable[[], Outbox] | None) -> None:
        self.outbox: Outbox | None = None
        self._closed = False
        self._lock = threading.Lock()
        if open_outbox is None:
            return
        try:
            self.outbox = open_outbox()
        except Exception as exc:  # a corrupt or newer file, a directory in the way, no room to create it
            _unusable("", exc)

    @property
    def on(self) -> bool:
        return self.outbox is not None

    def _guard(self, call: Callable[[Outbox], T]) -> T | None:
        outbox = self.outbox
        if outbox is None:
            return None
        try:
            return call(outbox)
        except Exception as exc:  # a full disk, a file broken under us
            with self._lock:
                first, self.outbox = self.outbox is outbox, None
            if first:
                if not self._closed:  # a send that outlived `close` ends quietly
                    _unusable(outbox.describe(), exc)
                with contextlib.suppress(Exception):
                    outbox.close()
            return None

    def add(self, channel: str, notice: RolloutNotice, limit: int) -> int | None:
        if self.outbox is None:
            return None
        row = self._guard(lambda outbox: outbox.add(channel, notice, limit))
        return _FULL if row is None and self.outbox is not None else row

    def remove(self, row: int | None) -> None:
        if row is not None:
            self._guard(lambda outbox: outbox.remove(row))

    def pending(self, channel: str) -> list[tuple[int, RolloutNotice]]:
        return self._guard(lambda outbox: outbox.pending(channel)) or []

    def channels(self) -> dict[str, int]:
        return self._guard(lambda outbox: outbox.channels()) or {}

    def adopt(self, channel: str) -> list[tuple[int, RolloutNotice]]:
        return self._guard(lambda outbox: outbox.adopt(channel)) or []

    def close(self) -> None:
        self._closed = True
        with self._lock:
            outbox, self.outbox = self.outbox, None
        if outbox is not None:
            outbox.close()


def _unusable(where: str, exc: Exception) -> None:
    log.error(
        "notification outbox unusable: notices are kept in memory only until restart",
        extra={"fields": {"outbox": where, "error": f"{where}: {exc}" if where else str(exc)}},
    )


class _Worker:
    def __init__(
        self,
        channel: Channel,
        key: str,
        durable: _Durable,
        queue_size: int,
        retry: tuple[int, float, float],
        on_settled: Settled | None = None,
        adopt_every_s: float = 5.0,
    ) -> None:
        self.channel, self.key, self.durable, self.queue_size = channel, key, durable, queue_size
        self.on_settled = on_settled
        self.adopt_every_s = adopt_every_s
        self.max_attempts, self.backoff_s, self.max_backoff_s = retry
        self.stats = ChannelStats()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._abort = threading.Event()
        self._resume()
        self._thread = threading.Thread(target=self._run, name=f"notify-{channel.describe()}", daemon=True)
        self._thread.start()

    def _resume(self) -> None:
        """Queues what a previous notifier left in the outbox, oldest first; beyond the queue's bound (a
        smaller `queue_size` than before) the newest are dropped, as `offer` would have."""
        left = self.durable.pending(self.key)
        for row, notice in left[: self.queue_size]:
            self._queue.put_nowait((row, notice))
        for row, notice in left[self.queue_size :]:
            self.durable.remove(row)
            self._dropped(notice, "outbox over the queue size")
        self.stats.resumed = min(len(left), self.queue_size)
        if left:
            log.info(
                "notifications resumed from the outbox",
                extra={"fields": {"channel": self.key, "count": self.stats.resumed}},
            )

    def _dropped(self, notice: RolloutNotice, why: str) -> None:
        self.stats.dropped += 1
        fields = {"channel": self.key, "rollout": notice.rollout_id}
        log.warning(f"notification dropped: {why}", extra={"fields": fields})
        self._settled(notice, "dropped", 0, why)

    def _settled(self, notice: RolloutNotice, outcome: str, attempts: int, error: str = "") -> None:
        """Tells the listener what became of the notice; its failure is logged, never raised."""
        if self.on_settled is None:
            return
        try:
            self.on_settled(
                NoticeDelivery.model_validate(
                    {
                        "channel": self.key,
                        "rollout_id": notice.rollout_id,
                        "event": notice.event,
                        "headline": notice.headline(),
                        "notice_at": notice.at,
                        "at": time.time(),
                        "outcome": outcome,
                        "attempts": attempts,
                        "error": error[:500],
                    }
                )
            )
        except Exception as exc:  # the log is bookkeeping: delivery goes on without it
            log.warning("notification outcome not recorded", extra={"fields": {"error": repr(exc)[:300]}})

    def offer(self, notice: RolloutNotice) -> None:
        row = self.durable.add(self.key, notice, self.queue_size)  # before the queue: a kill loses nothing
        if row == _FULL:
            self._dropped(notice, "queue full")
            return
        try:
            self._queue.put_nowait((row, notice))
        except queue.Full:  # in memory only (no outbox, or it failed): the queue is the bound
            self.durable.remove(row)
            self._dropped(notice, "queue full")
            return
        if row is None:
            self.stats.memory_only += 1

    def _adopt(self) -> None:
        """Queues what a replica that is gone still owed (a shared outbox; [] from a file), as far as
        the queue has room: the rest stays this replica's rows, sent after its next start or adopted
        by another replica when this one goes."""
        for row, notice in self.durable.adopt(self.key):
            try:
                self._queue.put_nowait((row, notice))
            except queue.Full:
                return
            self.stats.resumed += 1

    def _run(self) -> None:
        next_adopt = time.monotonic() + self.adopt_every_s
        while True:
            if time.monotonic() >= next_adopt:
                self._adopt()
                next_adopt = time.monotonic() + self.adopt_every_s
            try:
                item = self._queue.get(timeout=max(0.0, next_adopt - time.monotonic()))
            except queue.Empty:
                continue
            if item is _STOP or (self._abort.is_set() and self.durable.on):
                return  # cut short by `close`: what is still queued stays in the outbox
            assert isinstance(item, tuple)
            row, notice = item
            if self._deliver(notice):
                self.durable.remove(row)

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)

    def _deliver(self, notice: RolloutNotice) -> bool:
        """Sends with retries; False only when cut short by `close` with the notice still in the outbox
        (it goes out after the next start), True when it is done with: delivered or given up on."""
        fields = {"channel": self.key, "rollout": notice.rollout_id, "event": notice.event}
        for attempt in range(self.max_attempts):
            try:
                self.channel.send(notice)
            except Exception as exc:  # every backend error is worth a retry; the last one is logged
                last = attempt + 1 == self.max_attempts
                if not last and self._abort.wait(self._delay(attempt)) and self.durable.on:
                    self.stats.kept += 1
                    log.warning("notification kept in the outbox for next start", extra={"fields": fields})
                    return False
                if last or self._abort.is_set():
                    self.stats.failed += 1
                    log.error("notification not delivered", extra={"fields": {**fields, "error": str(exc)}})
                    self._settled(notice, "failed", attempt + 1, str(exc))
                    return True
                self.stats.retries += 1
                continue
            self.stats.delivered += 1
            log.info("notification delivered", extra={"fields": fields})
            self._settled(notice, "delivered", attempt + 1)
            return True
        return True

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
        outbox: Callable[[], Outbox] | None = None,
        on_settled: Settled | None = None,
        adopt_every_s: float = 5.0,
    ) -> None:
        """`outbox` opens the outbox (called once, here; an error falls back to memory, logged);
        `on_settled` is told, from the channel's worker, what became of each notice; every
        `adopt_every_s` each worker takes over what a replica that is gone still owed (a shared
        outbox)."""
        self.events = frozenset(events)
        self._durable = _Durable(outbox)
        retry = (max_attempts, backoff_s, max_backoff_s)
        keys = _channel_keys(channels)
        self._workers = [
            _Worker(c, key, self._durable, queue_size, retry, on_settled, adopt_every_s)
            for c, key in zip(channels, keys, strict=True)
        ]
        # Notices for a channel no longer configured stay in the outbox (it may come back); say so.
        for name, count in self._durable.channels().items():
            if name not in keys:
                log.warning(
                    "notifications waiting in the outbox for a channel no longer configured",
                    extra={"fields": {"channel": name, "count": count}},
                )

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
        self._durable.close()

    @property
    def durable(self) -> bool:
        """Whether notices are being kept in the outbox (False without one, or after it failed)."""
        return self._durable.on

    def stats(self) -> dict[str, ChannelStats]:
        return {w.key: w.stats for w in self._workers}


def _channel_keys(channels: Sequence[Channel]) -> list[str]:
    """The channels' names in the outbox: `describe()`, numbered where two channels share one (two
    Slack webhooks of one workspace), in the configured order, so a restart finds its own rows."""
    names = [c.describe() for c in channels]
    return [n if names.count(n) == 1 else f"{n}#{names[:i].count(n) + 1}" for i, n in enumerate(names)]
