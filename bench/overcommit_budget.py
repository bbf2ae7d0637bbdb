"""The overcommit bench's memory budget (bench/overcommit.py): sized from what one resident version
costs as the server's own cache counts it under a budget, and checked against it after warm-up.

A version's cost differs with and without a budget. Without one, each version serves from its own
module with its own CUDA graphs; under one, versions of an architecture take turns on weight slots
(inference/models/weight_slots.py), and a slot holds only the graphs of the buckets captured on it
so far. On an H100 a version without a budget counted 469 MB, and 8 versions fitted "a budget for 2"
sized from it: nothing was ever brought back. So the budget is sized from the cost of a version
measured under a budget, after the same warm-up as the measured traffic, read from the server's
`canaryflow_cache_*` series (what its budget counts at the scrape, graph pools grown since the
last load included); a budget whose versions turn out to cost more or less than it was sized for
is sized again from their cost and the server restarted (a bounded number of tries).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client.samples import Sample

from canaryflow.kernel.contracts import metrics as names


@dataclass(frozen=True)
class Residency:
    """What a server's budget counts at one scrape: versions on the device, the bytes they hold,
    and the bytes of idle weight slots."""

    versions: int
    version_bytes: float
    idle_slot_bytes: float

    @property
    def version_cost(self) -> float | None:
        """Device bytes one resident version holds, on average; None when none is resident."""
        return self.version_bytes / self.versions if self.versions else None

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> Residency:
        """From a `/metrics` page's samples; a server without the `canaryflow_cache_*` series is
        refused (its budget cannot be sized from what it counts)."""
        versions: float | None = None
        held: dict[str, float] = {}
        for sample in samples:
            if sample.name == names.CACHE_RESIDENT_VERSIONS:
                versions = sample.value
            elif sample.name == names.CACHE_DEVICE_BYTES:
                held[sample.labels.get(names.HOLDER_LABEL, "")] = sample.value
        if versions is None or "versions" not in held:
            raise ValueError(
                f"the server's /metrics has no {names.CACHE_RESIDENT_VERSIONS} or "
                f"{names.CACHE_DEVICE_BYTES}: one process (--workers 1) of this checkout's server?"
            )
        return cls(int(versions), held["versions"], held.get("idle_slots", 0.0))


def budget_for(fit: int, version_cost: float) -> float:
    """Room for `fit` versions of `version_cost` bytes and not for one more: half a version over."""
    return (fit + 0.5) * version_cost


@dataclass(frozen=True)
class Check:
    """Whether a budget holds `fit` versions of the cost measured under it, and what to try next."""

    holds: float | None  # versions of the measured cost the budget has room for (None: unmeasured)
    sized: bool  # room for `fit` of them and not for one more
    next_budget: float  # the budget to try next when not (the same one when it is)


def check(fit: int, budget: float, version_cost: float | None) -> Check:
    """`version_cost`: what one resident version cost under `budget` after warm-up. None when no
    version was resident even under traffic: one costs more than the whole budget, so the next
    try gives `fit` and a half of the budget (a lower bound on a version; the try after it
    measures)."""
    if version_cost is None or version_cost <= 0:
        return Check(None, False, budget_for(fit, budget))
    holds = budget / version_cost
    sized = fit <= holds < fit + 1
    return Check(holds, sized, budget if sized else budget_for(fit, version_cost))


def spread(readings: list[Residency]) -> dict[str, Any]:
    """Resident versions (min, mean, max) and the bytes held over readings taken while traffic ran."""
    if not readings:
        return {"samples": 0}
    counts = [r.versions for r in readings]
    return {
        "samples": len(readings),
        "min": min(counts),
        "mean": sum(counts) / len(counts),
        "max": max(counts),
        "version_mb_mean": sum(r.version_bytes for r in readings) / len(readings) / 2**20,
        "idle_slot_mb_mean": sum(r.idle_slot_bytes for r in readings) / len(readings) / 2**20,
    }


@contextmanager
def sampled(read: Callable[[], Residency], every_s: float = 0.5) -> Iterator[list[Residency]]:
    """Readings of `read()` (a `Residency`) every `every_s` while the block runs, in a thread; the
    list fills as they come. A scrape that fails (the server busy past its timeout) is skipped."""
    readings: list[Residency] = []
    done = threading.Event()

    def poll() -> None:
        while not done.wait(every_s):
            try:
                readings.append(read())
            except OSError:
                continue

    thread = threading.Thread(target=poll, name="residency", daemon=True)
    thread.start()
    try:
        yield readings
    finally:
        done.set()
        thread.join()
