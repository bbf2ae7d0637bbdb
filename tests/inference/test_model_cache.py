"""The overcommit cache's moves run outside its lock: a version being brought back stalls only the
batches that need it.

The model here is a stand-in for a GPU-resident one (no GPU here): its device copies take as long
as the test says, which is what a real copy of a few hundred MB does; the cache sees it through the
same `EmbeddingModel` methods. The real model on a CPU server is covered by
`test_shadow_and_cache.py::test_lru_cache_evicts_and_reloads`.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from inference.cache import ModelCache
from inference.tokenization import TokenizedBatch

MB = 2**20


class _TimedCopies:
    """An EmbeddingModel of `size` device bytes whose copies each way wait for `gate` (if given)."""

    dimension = 4
    max_seq_length = 16
    device = "cuda"
    launch_cost_tokens = 0
    pass_tokens: int | None = None
    matryoshka_dims: tuple[int, ...] = ()

    def __init__(self, size: int, gate: threading.Event | None = None) -> None:
        self.size = size
        self.gate = gate
        self.resident = True
        self.copies = 0

    def tokenize(self, texts: list[str]) -> TokenizedBatch:
        raise NotImplementedError

    def tokenizer_spec(self) -> str:
        return ""

    def embed(self, batch: TokenizedBatch) -> np.ndarray:
        assert self.resident, "a forward pass on weights that are not on the device"
        return np.zeros((len(batch), self.dimension), dtype=np.float32)

    def device_bytes(self) -> int:
        return self.size

    def is_resident(self) -> bool:
        return self.resident

    def _copy(self) -> None:
        self.copies += 1
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"

    def to_serving_device(self) -> None:
        if not self.resident:
            self._copy()
            self.resident = True

    def to_host(self) -> None:
        if self.resident:
            self._copy()
            self.resident = False

    def warm_up(self) -> None:
        pass


def _cache(budget_versions: int, count: int, gate: threading.Event | None = None):
    """`count` versions added in order (the start-up's evictions run with the gate open)."""
    if gate is not None:
        gate.set()
    events: list[tuple[str, str]] = []
    cache = ModelCache(budget_versions * 10 * MB + MB, lambda v, e: events.append((v, e)))
    models = {str(i): _TimedCopies(10 * MB, gate) for i in range(count)}
    for version, model in models.items():
        cache.add(version, model)
    return cache, models, events


def _counted(max_resident: int, count: int, budget_versions: float | None = None):
    """`count` versions of 10 MB under a cap of `max_resident` versions (and a budget in bytes for
    `budget_versions` of them, if given)."""
    budget = None if budget_versions is None else int(budget_versions * 10 * MB)
    cache = ModelCache(budget, None, max_resident=max_resident)
    models = {str(i): _TimedCopies(10 * MB) for i in range(count)}
    for version, model in models.items():
        cache.add(version, model)
    return cache, models


def _resident(models: dict[str, _TimedCopies]) -> set[str]:
    return {v for v, m in models.items() if m.resident}


def test_a_count_of_resident_versions_moves_the_least_recently_used_out() -> None:
    cache, models = _counted(max_resident=2, count=4)  # no budget in bytes
    assert _resident(models) == {"2", "3"} and cache.resident_count() == 2
    with cache.lease("0"):
        assert _resident(models) == {"3", "0"}
    with cache.lease("3"):
        pass
    with cache.lease("1"):  # "0" is the least recently used now
        assert _resident(models) == {"3", "1"}


def test_the_count_and_the_budget_in_bytes_whichever_binds_first() -> None:
    _, models = _counted(max_resident=3, count=4, budget_versions=2.5)
    assert _resident(models) == {"2", "3"}, "the budget holds two: it binds before a count of 3"
    by_count, models = _counted(max_resident=1, count=4, budget_versions=3.5)
    assert _resident(models) == {"3"}, "the count of 1 binds before a budget for three"
    with by_count.lease("0"):
        assert _resident(models) == {"0"}


def test_a_batch_finding_no_room_under_the_count_waits_for_another_batch_to_end() -> None:
    cache, models = _counted(max_resident=1, count=2)  # "1" resident
    inside, leave, arrived = threading.Event(), threading.Event(), threading.Event()

    def busy() -> None:
        with cache.lease("1"):
            inside.set()
            assert leave.wait(10)

    def arrive() -> None:
        with cache.lease("0"):
            arrived.set()

    holder = threading.Thread(target=busy)
    holder.start()
    assert inside.wait(5)
    waiter = threading.Thread(target=arrive)
    waiter.start()
    time.sleep(0.2)
    assert not arrived.is_set() and _resident(models) == {"1"}, "brought in over the count"
    leave.set()  # the batch on "1" ends: "1" leaves for the waiting one
    waiter.join(5)
    holder.join(5)
    assert arrived.is_set() and _resident(models) == {"0"}


def test_a_batch_ending_while_a_version_leaves_for_another_moves_no_third_one_out() -> None:
    gate = threading.Event()
    cache, models, _ = _cache(budget_versions=3, count=4, gate=gate)  # "1", "2", "3" resident
    gate.clear()
    batch = cache.lease("2")
    batch.__enter__()
    arriving = threading.Thread(target=lambda: cache.lease("0").__enter__())  # "1" leaves: at the gate
    arriving.start()
    time.sleep(0.1)
    ended = threading.Thread(target=lambda: batch.__exit__(None, None, None))
    ended.start()  # "1" leaving, "0" arriving: within the budget once the move is done
    ended.join(0.5)
    ended_at_once = not ended.is_alive()
    gate.set()
    for thread in (ended, arriving):
        thread.join(5)
    assert ended_at_once, "the batch's end moved an idle version out (and waited on its copy)"
    assert _resident(models) == {"0", "2", "3"} and models["3"].copies == 0


def test_a_count_below_one_is_refused_naming_the_option() -> None:
    with pytest.raises(ValueError, match="max_resident_versions"):
        ModelCache(None, None, max_resident=0)


def test_a_resident_version_is_served_while_another_is_brought_back() -> None:
    gate = threading.Event()
    cache, models, _ = _cache(budget_versions=2, count=3, gate=gate)
    assert [models[v].resident for v in "012"] == [False, True, True]
    gate.clear()
    leased = threading.Event()

    def bring_back() -> None:
        with cache.lease("0"):
            leased.set()

    mover = threading.Thread(target=bring_back)
    mover.start()
    time.sleep(0.1)  # the mover is in its copy, waiting for the gate
    assert not leased.is_set()
    started = time.perf_counter()
    with cache.lease("2") as model:  # resident, not chosen to make room (used last)
        model.embed(TokenizedBatch.filled(1, 4, 1))
    assert time.perf_counter() - started < 0.05, "a resident version waited behind another's copy"
    gate.set()
    mover.join(5)
    assert leased.is_set() and models["0"].resident and not models["1"].resident
    assert cache.resident_bytes() <= 2 * 10 * MB + MB


def test_batches_for_a_version_on_its_way_wait_for_it_and_it_is_copied_once() -> None:
    gate = threading.Event()
    cache, models, events = _cache(budget_versions=1, count=2, gate=gate)
    gate.clear()
    served: list[bool] = []

    def batch() -> None:
        with cache.lease("0") as model:
            served.append(model.is_resident())

    threads = [threading.Thread(target=batch) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    assert served == [], "a batch ran before its version's weights arrived"
    gate.set()
    for t in threads:
        t.join(5)
    assert served == [True] * 4
    assert models["0"].copies == 2, "evicted once at start-up, brought back once for four batches"
    assert events.count(("0", "load")) == 2 and events.count(("1", "evict")) == 1


def test_a_version_leaving_is_brought_back_after_it_left() -> None:
    gate = threading.Event()
    cache, models, _ = _cache(budget_versions=1, count=2, gate=gate)  # "0" left at start-up
    gate.clear()
    first = threading.Thread(target=lambda: cache.lease("0").__enter__())  # evicts "1": held at the gate
    first.start()
    time.sleep(0.1)
    second_done = threading.Event()

    def lease_leaving() -> None:
        with cache.lease("1"):
            second_done.set()

    second = threading.Thread(target=lease_leaving)
    second.start()
    time.sleep(0.1)
    assert not second_done.is_set(), "a batch ran on a version whose weights were leaving"
    gate.set()
    first.join(5)
    second.join(5)
    assert second_done.is_set() and models["1"].resident


def test_a_failed_copy_leaves_nothing_marked_moving() -> None:
    cache, models, _ = _cache(budget_versions=1, count=2)

    def broken() -> None:
        raise RuntimeError("CUDA out of memory")

    models["0"].to_serving_device = broken
    try:
        with cache.lease("0"):
            raise AssertionError("served without its weights")
    except RuntimeError as exc:
        assert "out of memory" in str(exc)
    del models["0"].to_serving_device  # the copy works again: the next batch brings it back
    with cache.lease("0") as model:
        assert model.is_resident()


def test_versions_used_at_once_beyond_the_budget_are_moved_out_when_their_batches_end() -> None:
    cache, models, _ = _cache(budget_versions=1, count=3)  # "2" resident
    first, second = cache.lease("0"), cache.lease("1")
    first.__enter__()
    second.__enter__()  # "0" in use: nothing idle makes room, so the budget is exceeded meanwhile
    assert models["0"].resident and models["1"].resident
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert cache.resident_bytes() <= 10 * MB + MB, "the budget never held again"
    assert models["1"].resident, "the version used last stays"


def test_a_batch_finding_no_room_waits_for_another_batch_to_end_instead_of_exceeding_the_budget() -> None:
    cache, models, _ = _cache(budget_versions=1, count=2)  # "1" resident
    inside, leave = threading.Event(), threading.Event()

    def busy() -> None:
        with cache.lease("1"):
            inside.set()
            assert leave.wait(10)

    holder = threading.Thread(target=busy)
    holder.start()
    assert inside.wait(5)
    arrived = threading.Event()

    def arrive() -> None:
        cache.lease("0").__enter__()  # held past the test: "0" stays in use
        arrived.set()

    waiter = threading.Thread(target=arrive)
    waiter.start()
    time.sleep(0.2)
    assert not arrived.is_set() and not models["0"].resident, "brought in over the budget"
    assert cache.resident_bytes() <= 10 * MB + MB
    started = time.perf_counter()
    leave.set()  # the batch on "1" ends: "1" leaves for the waiting one
    waiter.join(5)
    holder.join(5)
    assert arrived.is_set() and time.perf_counter() - started < 0.5
    assert models["0"].resident and not models["1"].resident


def test_a_version_with_a_steady_stream_of_batches_cannot_keep_room_from_a_waiting_one() -> None:
    cache, models, _ = _cache(budget_versions=1, count=2)  # "1" resident
    stop = threading.Event()

    def stream() -> None:  # back-to-back batches on "1", as a hot version's batcher runs them
        while not stop.is_set():
            with cache.lease("1"):
                time.sleep(0.005)

    hot = threading.Thread(target=stream)
    hot.start()
    time.sleep(0.05)
    started = time.perf_counter()
    with cache.lease("0") as model:
        waited = time.perf_counter() - started
        assert model.is_resident() and not models["1"].resident
        assert cache.resident_bytes() <= 10 * MB + MB
    stop.set()
    hot.join(5)
    assert waited < 0.5, f"waited {waited:.2f} s: the hot version's batches kept the room"
