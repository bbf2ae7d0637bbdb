"""Weight slots: device copies of one architecture that versions take turns on, graphs and all.

Under a memory budget (the LRU cache, `inference.cache`) versions move between the device and host
memory. Moving a module's weights gives them new device addresses, and CUDA graphs hold addresses:
each version brought back had to capture its ~130 shape buckets again, on the device lock every pass
needs (a capture storm: with 8 MiniLM versions over a budget for 2, 27-46 sentences/s on an H100).

Versions of one architecture (same parameter names, shapes and dtypes, same configuration, same
padding and input planes: their *signature*) can instead share device-resident *slots*. A slot is a
device copy of the module with its `GraphedForward`, captured once, reading the slot's own parameter
tensors. A version keeps its weights in host memory (pinned on a GPU); bringing it onto the device
binds it to a slot of its signature and copies its tensors into the slot's parameters in place,
ordered after every pass and capture queued on the slot's lanes (`GraphedForward.overwrite`), so
the slot's graphs stay valid. Moving it out only unbinds it: weights never change while served, so
nothing is copied back. A bring-back costs one host-to-device copy of the weights (MiniLM in fp16,
45 MB: a few milliseconds) and no capture.

A slot nobody is bound to (idle) stays on the device, its memory counted in the cache's budget,
until the next version of its signature brought in takes it, or the cache frees it to make room
for something else. On a CPU the same code runs: a slot is a copy of the module in host memory and
the copies are plain copies, so the tests exercise the same bindings.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from inference.models.cuda_graphs import GraphedForward

# Configuration keys that name a checkpoint rather than shape its computation.
_IDENTITY_KEYS = ("_name_or_path", "name_or_path", "transformers_version", "_commit_hash")


def module_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The tensors a slot holds, in an order equal for modules of one architecture (tied weights
    once, as `parameters()` yields them)."""
    return [*module.parameters(), *module.buffers()]


def slot_signature(module: nn.Module, *serving: Hashable) -> Hashable:
    """What two modules must share for one to run the other's weights: every tensor's name, shape
    and dtype, every sub-module's configuration (activation, norm epsilon, attention kind) and the
    module's printed structure, the pooling choices of a plain chain, and `serving` (max length,
    pad token, input planes). Only the weights' values may differ."""
    tensors = tuple(
        (name, tuple(t.shape), str(t.dtype))
        for name, t in [*module.named_parameters(), *module.named_buffers()]
    )
    configs = []
    for sub in module.modules():
        config = getattr(sub, "config", None)
        if config is not None and callable(getattr(config, "to_dict", None)):
            settings = {k: v for k, v in config.to_dict().items() if k not in _IDENTITY_KEYS}
            configs.append(json.dumps(settings, sort_keys=True, default=str))
    choices = (getattr(module, "pooling", None), getattr(module, "normalize", None))
    return (type(module).__qualname__, repr(module), tuple(configs), choices, tensors, serving)


class Slot:
    """A device copy of one architecture's module, with its graphs; bound to at most one version."""

    def __init__(self, signature: Hashable, module: nn.Module, graphs: GraphedForward | None) -> None:
        self.signature = signature
        self.module = module
        self.graphs = graphs
        self.tensors = module_tensors(module)
        self.weight_bytes = int(sum(t.numel() * t.element_size() for t in self.tensors))
        self.owner: object | None = None
        self.reserved_for: object | None = None
        self.freeing = False
        self.idle_since = 0

    def bytes(self) -> int:
        """Device memory the slot holds: its weights and its graphs' memory pools."""
        return self.weight_bytes + (self.graphs.pool_bytes if self.graphs is not None else 0)

    def load(self, sources: Sequence[torch.Tensor]) -> None:
        """Copy a version's weights into the slot's tensors, in place (their addresses, which the
        graphs replay, do not change)."""
        if len(sources) != len(self.tensors):
            raise ValueError(f"slot holds {len(self.tensors)} tensors, the version {len(sources)}")
        if self.graphs is not None:
            self.graphs.overwrite(self.tensors, sources)
            return
        # Eager passes run on the device's current stream, behind this copy (or on the CPU, after it).
        with torch.no_grad():
            for target, source in zip(self.tensors, sources, strict=True):
                target.copy_(source, non_blocking=True)

    def free(self) -> None:
        """Drop the graphs (lanes drained first) and the module: the device memory goes back."""
        if self.graphs is not None:
            self.graphs.release()
            self.graphs = None
        self.tensors = []
        self.module = nn.Module()


@runtime_checkable
class SlotSharing(Protocol):
    """A model that can keep its weights in host memory and run on a shared slot."""

    def share_slots(self, slots: WeightSlots) -> None: ...


class WeightSlots:
    """The slots of one server's device, and which model of which signature each is bound to.

    The cache (`inference.cache.ModelCache`) decides what may be on the device; this pool keeps the
    slots: binding a model to an idle slot of its signature (or a new one), unbinding it, and the
    bookkeeping the budget needs (idle slots' bytes, reserving an idle slot for a model on its way
    in, freeing idle slots to make room). Models are members by identity (weakly held)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: list[Slot] = []
        self._members: weakref.WeakKeyDictionary[object, tuple[Hashable, int]] = weakref.WeakKeyDictionary()
        self._clock = 0

    # -- membership ------------------------------------------------------------------------------

    def adopt(self, model: object) -> None:
        """Make `model` a member if it can share slots (it moves its weights to host memory)."""
        if isinstance(model, SlotSharing) and model not in self._members:
            model.share_slots(self)

    def join(self, member: object, signature: Hashable, weight_bytes: int) -> None:
        with self._lock:
            self._members[member] = (signature, weight_bytes)

    def expected_bytes(self, member: object) -> int:
        """What binding `member` costs: a slot of its signature as the largest one now is (its
        graphs' pools included), else its weights; 0 for a model no longer a member."""
        with self._lock:
            if member not in self._members:
                return 0
            signature, weights = self._members[member]
            sizes = [s.bytes() for s in self._slots if s.signature == signature and not s.freeing]
        return max([weights, *sizes])

    # -- binding ---------------------------------------------------------------------------------

    def bind(self, member: object, make: Callable[[], Slot]) -> Slot:
        """The slot `member` runs on: the one reserved for it, else an idle one of its signature,
        else a new one (`make`, outside the lock: a device copy of the module)."""
        with self._lock:
            signature, _ = self._members[member]
            slot = self._idle(signature, member)
            if slot is not None:
                slot.owner, slot.reserved_for = member, None
                return slot
        slot = make()
        if slot.signature != signature:
            raise ValueError("a slot made for another signature")
        with self._lock:
            slot.owner = member
            self._slots.append(slot)
        return slot

    def unbind(self, slot: Slot) -> None:
        """The slot's model left the device: the slot stays, idle, for the next of its signature."""
        with self._lock:
            self._clock += 1
            slot.owner, slot.idle_since = None, self._clock

    def _idle(self, signature: Hashable, member: object) -> Slot | None:
        """Under the lock: the idle slot reserved for `member`, else an unreserved idle one."""
        idle = [s for s in self._slots if s.owner is None and not s.freeing and s.signature == signature]
        mine = [s for s in idle if s.reserved_for is member]
        free = [s for s in idle if s.reserved_for is None]
        found = mine or free
        return found[0] if found else None

    # -- the budget's bookkeeping ----------------------------------------------------------------

    def reserve(self, member: object) -> bool:
        """Reserve an idle slot of `member`'s signature for it (no other model takes it; its bytes
        count as the arriving model's from now on). False for a non-member or when there is none."""
        with self._lock:
            if member not in self._members:
                return False
            slot = self._idle(self._members[member][0], member)
            if slot is None:
                return False
            slot.reserved_for = member
            return True

    def unreserve(self, member: object) -> None:
        with self._lock:
            for slot in self._slots:
                if slot.reserved_for is member:
                    slot.reserved_for = None

    def idle_bytes(self) -> int:
        """Device bytes of slots bound to nobody and reserved for nobody (those being freed
        included, until they are gone)."""
        with self._lock:
            return sum(s.bytes() for s in self._slots if s.owner is None and s.reserved_for is None)

    def _spare(self) -> list[Slot]:
        """Under the lock: slots bound to nobody, reserved for nobody and not being freed."""
        return [s for s in self._slots if s.owner is None and s.reserved_for is None and not s.freeing]

    def idle_count(self) -> int:
        """Slots bound to nobody, reserved for nobody and not being freed."""
        with self._lock:
            return len(self._spare())

    def detach_idle(self, over: int, count: int = 0) -> Callable[[], None]:
        """Choose the least recently used idle, unreserved slots whose bytes add up to `over`, and
        at least `count` of them (all of them if they do not), and mark them leaving; the returned
        call frees them (outside the caller's lock)."""
        with self._lock:
            idle = sorted(self._spare(), key=lambda s: s.idle_since)
            chosen: list[Slot] = []
            for slot in idle:
                if over <= 0 and len(chosen) >= count:
                    break
                slot.freeing = True
                over -= slot.bytes()
                chosen.append(slot)

        def free() -> None:
            for slot in chosen:
                try:
                    slot.free()
                finally:
                    with self._lock:
                        self._slots.remove(slot)

        return free

    def leave(self, member: object) -> None:
        with self._lock:
            self._members.pop(member, None)
            for slot in self._slots:
                if slot.reserved_for is member:
                    slot.reserved_for = None

    def slots(self) -> list[tuple[Hashable, object | None, int]]:
        """(signature, bound model or None, bytes) of every slot, for metrics and tests."""
        with self._lock:
            return [(s.signature, s.owner, s.bytes()) for s in self._slots if not s.freeing]
