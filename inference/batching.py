"""Dynamic batching: many clients' requests become few, well-packed forward passes.

Requests queue per model version. A batch is dispatched as soon as a forward slot is free (so a lone
request at low load waits at most `max_wait_s`), holding at most `max_batch_size` texts. Inside a
batch, texts are tokenized together in a worker thread (the Rust tokenizer releases the GIL), sorted
by length and cut into chunks so that short sentences are not padded to long ones: a chunk is closed
when the padding it would add costs more than one extra forward pass. Results go back to each
request in its own order. The queue is bounded: past `max_queue` waiting texts, `submit` refuses.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field

import numpy as np

from inference.models.base import EmbeddingModel, TokenizedBatch


class QueueFull(Exception):
    """More texts are waiting than the server accepts; the caller should retry later."""


class InputTooLong(ValueError):
    """A text is longer than the model takes and truncation is switched off."""


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What one dispatched batch did; fed to the metrics."""

    texts: int
    tokens: int
    padded_tokens: int
    forward_passes: int


@dataclass(slots=True)
class EmbedResult:
    embeddings: np.ndarray
    tokens: int
    queue_s: float


@dataclass(slots=True)
class _Pending:
    texts: list[str] | TokenizedBatch  # raw, or tokenized already (by a front process)
    future: asyncio.Future[EmbedResult]
    enqueued: float
    dispatched: float = 0.0


def plan_chunks(
    lengths: list[int], max_chunk: int, max_chunk_tokens: int, launch_cost_tokens: int
) -> list[list[int]]:
    """Indices of texts grouped into forward passes, shortest first.

    Greedy over texts sorted by length: a text joins the current chunk unless that would exceed the
    size or padded-token caps, or the chunk's padding would exceed one pass's fixed cost.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    chunks: list[list[int]] = []
    current: list[int] = []
    real = 0
    for idx in order:
        n = lengths[idx]
        if current:
            padded = n * (len(current) + 1)  # sorted ascending: the newcomer is the longest
            if (
                len(current) >= max_chunk
                or padded > max_chunk_tokens
                or padded - (real + n) > launch_cost_tokens
            ):
                chunks.append(current)
                current, real = [], 0
        current.append(idx)
        real += n
    if current:
        chunks.append(current)
    return chunks


ModelLease = Callable[[], AbstractContextManager[EmbeddingModel]]


@dataclass
class BatcherConfig:
    max_batch_size: int = 256
    max_wait_s: float = 0.001
    max_queue: int = 8192
    max_chunk_tokens: int = 65536
    concurrent_batches: int = 2
    truncate: bool = True


@dataclass
class _Outcome:
    results: list[EmbedResult | Exception] = field(default_factory=list)
    stats: BatchStats | None = None


class DynamicBatcher:
    """One version's request queue and the task that turns it into forward passes."""

    def __init__(
        self,
        lease: ModelLease,
        executor: Executor,
        config: BatcherConfig,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self._lease = lease
        self._executor = executor
        self._config = config
        self._on_batch = on_batch
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_texts = 0
        self._in_flight_texts = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._slots = asyncio.Semaphore(config.concurrent_batches)

    @property
    def pending_texts(self) -> int:
        return self._queued_texts + self._in_flight_texts

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("server shutting down"))
        self._queue.clear()

    def submit(self, texts: list[str] | TokenizedBatch) -> asyncio.Future[EmbedResult]:
        if self._queued_texts + len(texts) > self._config.max_queue:
            raise QueueFull(f"{self._queued_texts} texts queued (limit {self._config.max_queue})")
        loop = asyncio.get_running_loop()
        pending = _Pending(texts, loop.create_future(), time.perf_counter())
        self._queue.append(pending)
        self._queued_texts += len(texts)
        self._wake.set()
        if self._queued_texts >= self._config.max_batch_size:
            self._full.set()
        return pending.future

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        count = 0
        while self._queue:
            size = len(self._queue[0].texts)
            if batch and count + size > self._config.max_batch_size:
                break
            pending = self._queue.popleft()
            batch.append(pending)
            count += size
        self._queued_texts -= count
        self._in_flight_texts += count
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            # An idle device takes the queue at once (lowest latency at low load); a busy one gets
            # up to max_wait for the batch to fill, since the texts would wait for a slot anyway.
            busy = self._in_flight_texts > 0
            if busy and self._config.max_wait_s > 0 and self._queued_texts < self._config.max_batch_size:
                delay = self._queue[0].enqueued + self._config.max_wait_s - time.perf_counter()
                if delay > 0:
                    self._full.clear()
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), delay)
            batch = self._take_batch()
            now = time.perf_counter()
            for pending in batch:
                pending.dispatched = now
            work = loop.run_in_executor(self._executor, self._process, batch)
            work.add_done_callback(functools.partial(self._deliver, batch))

    def _deliver(self, batch: list[_Pending], work: asyncio.Future[_Outcome]) -> None:
        self._slots.release()
        self._in_flight_texts -= sum(len(p.texts) for p in batch)
        error = work.exception()
        if error is not None:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        outcome = work.result()
        for pending, result in zip(batch, outcome.results, strict=True):
            if pending.future.done():  # the caller went away
                continue
            if isinstance(result, Exception):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
        if outcome.stats is not None and self._on_batch is not None:
            self._on_batch(outcome.stats)

    @staticmethod
    def _tokenize(model: EmbeddingModel, batch: list[_Pending]) -> TokenizedBatch:
        """One tokenizer call for every raw text of the batch; pre-tokenized parts are spliced in."""
        raw = [t for pending in batch if not isinstance(pending.texts, TokenizedBatch) for t in pending.texts]
        fresh = model.tokenize(raw) if raw else None
        if fresh is not None and len(raw) == sum(len(p.texts) for p in batch):
            return fresh
        parts: list[TokenizedBatch] = []
        at = 0
        for pending in batch:
            if isinstance(pending.texts, TokenizedBatch):
                parts.append(pending.texts)
            else:
                assert fresh is not None
                parts.append(fresh.take(np.arange(at, at + len(pending.texts))))
                at += len(pending.texts)
        return TokenizedBatch.concat(parts)

    def _process(self, batch: list[_Pending]) -> _Outcome:
        """Runs in a worker thread: tokenize, chunk, forward, and split results per request."""
        with self._lease() as model:
            tokenized = self._tokenize(model, batch)
            lengths = tokenized.lengths
            chunks = plan_chunks(
                lengths.tolist(),
                self._config.max_batch_size,
                self._config.max_chunk_tokens,
                model.launch_cost_tokens,
            )
            out = np.empty((len(tokenized), model.dimension), dtype=np.float32)
            padded = 0
            for chunk in chunks:
                out[chunk] = model.embed(tokenized.take(chunk))
                padded += int(lengths[chunk[-1]]) * len(chunk)
        outcome = _Outcome(
            stats=BatchStats(len(tokenized), int(lengths.sum()), padded, len(chunks)),
        )
        start = 0
        for pending in batch:
            end = start + len(pending.texts)
            if not self._config.truncate and tokenized.truncated[start:end].any():
                over = np.flatnonzero(tokenized.truncated[start:end]).tolist()
                outcome.results.append(
                    InputTooLong(f"input {over}: longer than the model's {model.max_seq_length} tokens")
                )
            else:
                outcome.results.append(
                    EmbedResult(
                        out[start:end], int(lengths[start:end].sum()), pending.dispatched - pending.enqueued
                    )
                )
            start = end
        return outcome
