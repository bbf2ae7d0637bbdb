"""Memory-bounded residency of model versions on the serving device (Seldon calls it overcommit).

Every configured version stays loaded, but only as many as fit `budget_bytes` keep their weights (and
CUDA-graph pools) on the device; the least recently used idle ones are moved to host memory and
brought back when a request needs them. A version in use is never moved: if nothing idle can make
room while other versions' batches run, the batch waits for one of them to end, and that batch's
end moves the least recently used idle version out for it (at once, so that a version with a
steady stream of batches cannot keep room from a waiting one for ever). Only after `ROOM_WAIT_S`
(a lease held long: a warm-up) or when nothing else runs is the budget exceeded for that moment
rather than a request failed, and the batch that leaves last moves the least recently used idle
versions out until the device is within budget again. Exceeding the budget whenever versions were
used at once cost more than the wait: on a GPU, each of those moments made a weight slot (a device
copy of the module) that was freed at once, and captured graphs for it in between.

Weights move outside the cache's lock: the lock is held only to choose what moves (the version a
batch needs, the idle ones that make room for it) and to mark them moving; the copies themselves
(tens of milliseconds for a device round trip of a few hundred MB) run after, so a batch of a
resident version never waits behind another version being brought back. A batch for a version
whose weights are moving waits for that move and looks again.

With weight slots (`inference.models.weight_slots`, which the server uses under a budget) device
memory is held by slots rather than by versions: a version moved out leaves its slot on the device,
idle, and the budget counts idle slots too. Room is made by freeing idle slots first (least recently
left first), then by moving out the least recently used idle versions; a version on its way in
takes an idle slot of its signature (one a version just moved out for it left, often) before any
other is freed, so a bring-back among versions of one architecture copies weights and captures no
graphs. The budget is exceeded only by versions in use, as without slots.

A second limit, `max_resident` (the server's `--max-resident-versions`), caps how many versions are
on the device at once, as vLLM's `--max-loras` caps its GPU adapter slots: room is made the same
way (least recently used idle versions out, a batch waiting for a batch's end, exceeded only after
`ROOM_WAIT_S` or when nothing else runs), for whichever limit binds first. A count is exact where
bytes are not: on weight slots a version's cost grows as its slot captures graph buckets, so a
budget in bytes sized for N versions holds another number of them as the pools grow. With weight
slots the count covers them too: idle slots beyond what the cap leaves free (the cap less the
versions held or arriving) are freed, so the device holds at most `max_resident` slots of the
versions' architectures outside the moments the cap is exceeded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from inference.models.base import DeviceSlots, EmbeddingModel

# (version, event) with event "load" or "evict"; the callback reads residency itself.
CacheListener = Callable[[str, str], None]

# How long a batch waits for room while other versions' batches hold the device before it goes
# ahead over the budget. Waits are a batch long in steady traffic (each batch's end makes room).
ROOM_WAIT_S = 1.0


@dataclass
class _Entry:
    model: EmbeddingModel
    users: int = 0
    last_used: int = 0
    # Set while the weights move (either way); `arriving` says which way, for the budget's sums.
    moving: threading.Event | None = None
    arriving: bool = False


class ModelCache:
    def __init__(
        self,
        budget_bytes: int | None,
        listener: CacheListener | None = None,
        slots: DeviceSlots | None = None,
        max_resident: int | None = None,
    ) -> None:
        if max_resident is not None and max_resident < 1:
            raise ValueError(f"max_resident_versions: at least 1 version, not {max_resident}")
        self._budget = budget_bytes
        self._max_resident = max_resident
        self._listener = listener
        self._slots = slots
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified when a move ends or room was made
        self._waiting = 0  # batches waiting for room
        self._made_room = 0  # versions moved out for waiting batches, not yet taken up by one
        self._clock = 0

    def _notify(self, version: str, event: str) -> None:
        if self._listener is not None:
            self._listener(version, event)

    def resident_bytes(self) -> int:
        """Device bytes held now or promised: resident versions (those leaving included, until
        they are gone), those on their way in, and idle weight slots."""
        return self._held(settled=False)[0] + self.idle_slot_bytes()

    def resident_count(self) -> int:
        """Versions held on the device now or promised (leaving ones until gone, arriving ones),
        as `resident_bytes` counts their bytes: what `max_resident` caps."""
        return self._held(settled=False)[1]

    def _held(self, settled: bool) -> tuple[int, int]:
        """Device bytes (idle slots out) and versions held now or promised; `settled`: without the
        versions leaving, whose room is made already (a batch's end that counted them would move
        one more out for nothing). A batch on its way in counts them: their room is promised."""
        held = [
            e
            for e in self._entries.values()
            if e.arriving or (e.model.is_resident() and not (settled and e.moving is not None))
        ]
        return sum(e.model.device_bytes() for e in held), len(held)

    def _over(self) -> bool:
        """Under the lock, at a batch's end: whether either limit is exceeded once the moves under
        way are done (idle slots in the bytes)."""
        held, count = self._held(settled=True)
        return not self._within(held + self.idle_slot_bytes(), count)

    def _within(self, held_bytes: int, held_versions: int) -> bool:
        bytes_fit = self._budget is None or held_bytes <= self._budget
        return bytes_fit and (self._max_resident is None or held_versions <= self._max_resident)

    def idle_slot_bytes(self) -> int:
        """Device bytes of weight slots bound to no version and reserved for none (in the budget,
        in no version's bytes)."""
        return self._slots.idle_bytes() if self._slots is not None else 0

    def add(self, version: str, model: EmbeddingModel) -> None:
        """Take a freshly loaded model and have it on the device (a model that shares weight slots
        arrives in host memory and is brought in here); may evict idle others for the budget."""
        if self._slots is not None:
            self._slots.adopt(model)
        with self._lock:
            self._clock += 1
            self._entries[version] = _Entry(model, last_used=self._clock)
            victims = self._make_room(version) if model.is_resident() else None
        if victims is None:
            with self.lease(version):  # brought in as a batch's version is
                return
        self._carry_out(victims, None)
        self._notify(version, "load")

    def remove(self, version: str) -> EmbeddingModel | None:
        """Forget a version no batch uses any more; its device memory (or weight slot, left idle
        for the next version of its architecture) is given back."""
        with self._lock:
            entry = self._entries.pop(version, None)
        if entry is None:
            return None
        if self._slots is not None:
            entry.model.to_host()
            self._slots.leave(entry.model)
        return entry.model

    def versions(self) -> list[str]:
        return list(self._entries)

    def is_resident(self, version: str) -> bool:
        return self._entries[version].model.is_resident()

    def residency(self) -> dict[str, int]:
        """Device bytes held by each version now (0 when its weights are in host memory)."""
        entries = list(self._entries.items())
        return {v: e.model.device_bytes() if e.model.is_resident() else 0 for v, e in entries}

    def _idle(self, keep: str) -> list[str]:
        """Under the lock: resident versions no batch uses and none moves, least recently used first."""
        idle = (
            (e.last_used, v)
            for v, e in self._entries.items()
            if v != keep and e.users == 0 and e.moving is None and e.model.is_resident()
        )
        return [v for _, v in sorted(idle)]

    def _choose(self, keep: str, settled: bool = False) -> tuple[list[str], bool]:
        """Under the lock: the least recently used idle versions whose departure brings the device
        within budget and within the count (idle slots, which `_carry_out` frees first, counted
        out), and whether it does. A version on its way in is counted in both; one leaving too,
        unless `settled` (`_held`)."""
        if self._budget is None and self._max_resident is None:
            return [], True
        held, count = self._held(settled)
        chosen: list[str] = []
        for victim in self._idle(keep):
            if self._within(held, count):
                break
            held -= self._entries[victim].model.device_bytes()
            count -= 1
            chosen.append(victim)
        return chosen, self._within(held, count)

    def _leaving(self, versions: list[str]) -> list[tuple[str, _Entry]]:
        """Under the lock: mark `versions` leaving (the caller moves them)."""
        victims = [(v, self._entries[v]) for v in versions]
        for _, entry in victims:
            entry.moving = threading.Event()
        return victims

    def _make_room(self, keep: str) -> list[tuple[str, _Entry]]:
        return self._leaving(self._choose(keep)[0])

    def _move_out(self, victims: list[tuple[str, _Entry]]) -> None:
        for i, (version, entry) in enumerate(victims):
            try:
                entry.model.to_host()
            except BaseException:  # none may stay marked moving: batches would wait for it forever
                for _, rest in victims[i:]:
                    self._moved(rest)
                raise
            self._moved(entry)
            self._notify(version, "evict")

    def _carry_out(self, victims: list[tuple[str, _Entry]], arriving: _Entry | None) -> None:
        """Move `victims` out, then free idle slots while the device is over budget or holds more
        slots than the count leaves room for, after reserving for `arriving` an idle slot of its
        signature if there is one (a victim's, often: the copy goes into it, and no slot is freed
        only to be made again)."""
        self._move_out(victims)
        if self._slots is None or (self._budget is None and self._max_resident is None):
            return
        with self._lock:
            if arriving is not None:
                self._slots.reserve(arriving.model)
            held, count = self._held(settled=False)
            over = 0 if self._budget is None else held + self.idle_slot_bytes() - self._budget
            spare = 0
            if self._max_resident is not None:
                spare = self._slots.idle_count() - max(self._max_resident - count, 0)
            free = self._slots.detach_idle(over, spare) if over > 0 or spare > 0 else None
        if free is not None:
            free()

    def _arrive(self, version: str, entry: _Entry, victims: list[tuple[str, _Entry]]) -> None:
        """Bring `entry`, marked arriving, onto the device after `victims` made room for it."""
        try:
            self._carry_out(victims, entry)
            entry.model.to_serving_device()
        finally:
            if self._slots is not None:  # a reservation never outlives the arrival (bound, or failed)
                self._slots.unreserve(entry.model)
            self._moved(entry)
        self._notify(version, "load")

    def _moved(self, entry: _Entry) -> None:
        with self._lock:
            moving, entry.moving, entry.arriving = entry.moving, None, False
            self._room.notify_all()
        if moving is not None:
            moving.set()

    @contextmanager
    def lease(self, version: str) -> Iterator[EmbeddingModel]:
        """The model on its serving device for the duration of one batch."""
        entry, victims = self._take(version)
        try:
            if victims is not None:  # this batch brings the version back
                self._arrive(version, entry, victims)
            if not entry.model.is_resident():
                raise RuntimeError(f"version {version}: its weights could not be brought to the device")
            yield entry.model
        finally:
            with self._lock:
                entry.users -= 1
                over = self._over()
                victims = self._leaving(self._choose(version, settled=True)[0]) if over else []
                if self._waiting > self._made_room and not victims:
                    victims = self._leaving(self._idle(keep="")[:1])  # room for a waiting batch
                    self._made_room += len(victims)
            if over or victims:
                self._carry_out(victims, None)

    def _take(self, version: str) -> tuple[_Entry, list[tuple[str, _Entry]] | None]:
        """Count a user in; when the version is not resident, mark it arriving and choose what makes
        room for it (the caller moves both, outside the lock). Waits out a move under way, and for
        room while other versions' batches hold it (at most `ROOM_WAIT_S`)."""
        deadline: float | None = None
        waited = False
        while True:
            with self._lock:
                entry = self._entries[version]
                moving = entry.moving
                if moving is None:
                    self._clock += 1
                    entry.last_used = self._clock
                    if entry.model.is_resident():
                        entry.users += 1
                        return entry, None
                    # Counted from now on (an idle slot reserved for it is no longer counted idle).
                    entry.arriving = True
                    if self._slots is not None:
                        self._slots.reserve(entry.model)
                    chosen, room = self._choose(version)
                    # Room a batch's end made for the waiting batches is theirs, not a newcomer's.
                    theirs = self._made_room > 0 and self._waiting > 0 and not waited
                    now = time.monotonic()
                    deadline = now + ROOM_WAIT_S if deadline is None else deadline
                    if (not theirs and (room or not self._busy(version))) or now >= deadline:
                        if waited and self._made_room:
                            self._made_room -= 1
                        entry.users += 1
                        entry.moving = threading.Event()
                        return entry, self._leaving(chosen)
                    entry.arriving = False
                    if self._slots is not None:
                        self._slots.unreserve(entry.model)
                    self._waiting += 1
                    try:
                        self._room.wait(deadline - now)
                    finally:
                        self._waiting -= 1
                        if self._waiting == 0:
                            self._made_room = 0
                    waited = True
                    continue
            moving.wait()

    def _busy(self, keep: str) -> bool:
        """Under the lock: whether another version's batch or move is under way (room will come)."""
        return any(e.users or e.moving is not None for v, e in self._entries.items() if v != keep)
