"""Memory-bounded residency of model versions on the serving device (Seldon calls it overcommit).

Every configured version stays loaded, but only as many as fit `budget_bytes` keep their weights (and
CUDA-graph pools) on the device; the least recently used idle ones are moved to host memory and
brought back when a request needs them. A version in use is never moved: if nothing idle can make
room, the budget is exceeded for that moment rather than a request failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from inference.models.base import EmbeddingModel

# (version, event) with event "load" or "evict"; the callback reads residency itself.
CacheListener = Callable[[str, str], None]


@dataclass
class _Entry:
    model: EmbeddingModel
    users: int = 0
    last_used: int = 0


class ModelCache:
    def __init__(self, budget_bytes: int | None, listener: CacheListener | None = None) -> None:
        self._budget = budget_bytes
        self._listener = listener
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._clock = 0

    def _notify(self, version: str, event: str) -> None:
        if self._listener is not None:
            self._listener(version, event)

    def resident_bytes(self) -> int:
        return sum(e.model.device_bytes() for e in self._entries.values() if e.model.is_resident())

    def add(self, version: str, model: EmbeddingModel) -> None:
        """Take a freshly loaded (resident) model; may evict idle others to respect the budget."""
        with self._lock:
            self._clock += 1
            entry = _Entry(model, last_used=self._clock)
            self._entries[version] = entry
            self._make_room(version, needed=0)
        self._notify(version, "load")

    def remove(self, version: str) -> EmbeddingModel | None:
        with self._lock:
            entry = self._entries.pop(version, None)
        return entry.model if entry else None

    def versions(self) -> list[str]:
        return list(self._entries)

    def is_resident(self, version: str) -> bool:
        return self._entries[version].model.is_resident()

    def residency(self) -> dict[str, int]:
        """Device bytes held by each version now (0 when its weights are in host memory)."""
        entries = list(self._entries.items())
        return {v: e.model.device_bytes() if e.model.is_resident() else 0 for v, e in entries}

    def _make_room(self, keep: str, needed: int) -> None:
        if self._budget is None:
            return
        idle = sorted(
            (
                (e.last_used, v)
                for v, e in self._entries.items()
                if v != keep and e.users == 0 and e.model.is_resident()
            ),
        )
        for _, victim in idle:
            if self.resident_bytes() + needed <= self._budget:
                break
            self._entries[victim].model.to_host()
            self._notify(victim, "evict")

    @contextmanager
    def lease(self, version: str) -> Iterator[EmbeddingModel]:
        """The model on its serving device for the duration of one batch."""
        loaded = False
        with self._lock:
            entry = self._entries[version]
            self._clock += 1
            entry.last_used = self._clock
            entry.users += 1
            if not entry.model.is_resident():
                self._make_room(version, needed=entry.model.device_bytes())
                entry.model.to_serving_device()
                loaded = True
        if loaded:
            self._notify(version, "load")
        try:
            yield entry.model
        finally:
            with self._lock:
                entry.users -= 1
