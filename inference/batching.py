"""Dynamic batching: many clients' requests become few, well-packed forward passes.

Requests (token ids, tokenized by the front) queue per model version. A batch is dispatched as soon
as a forward slot is free (so a lone request at low load waits at most `max_wait_s`), holding at most
`max_batch_size` texts and, where passes are cut (graphed passes on a GPU), one pass of tokens.
Inside a batch, texts are sorted by length and cut into chunks so that short sentences are not
padded to long ones: a chunk is closed when the padding it would add costs more than one extra
forward pass. Results go back to each request in its own order.

The queue is bounded in tokens, the unit a forward pass costs: past `max_queue_tokens` waiting,
`submit` refuses (QueueFull, answered 429). It can also be bounded in time: with `max_queue_wait_s`
a request is refused when the work ahead of it (queued, and what is left of the batches running)
would take longer than that at the throughput measured so far, which bounds an admitted request's
latency to about that wait plus its own pass however many arrive. A request whose future is
cancelled while it waits (its deadline passed, its client went away) leaves the queue at once and
is never computed.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field

import numpy as np

from inference.models.base import EmbeddingModel, TokenizedBatch


class QueueFull(Exception):
    """More tokens are waiting than the server accepts; the caller should retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


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
    texts: TokenizedBatch
    tokens: int
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
    max_queue_tokens: int = 65536
    max_queue_wait_s: float | None = None
    max_chunk_tokens: int = 65536
    concurrent_batches: int = 2
    # The model's pass size in tokens (`EmbeddingModel.pass_tokens`): a batch holds at most one
    # pass (`_take_batch`).
    pass_tokens: int | None = None


@dataclass
class _Outcome:
    results: list[EmbedResult] = field(default_factory=list)
    stats: BatchStats | None = None
    seconds: float = 0.0


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
        self._queued_tokens = 0
        self._in_flight_texts = 0
        self._tokens_per_s: float | None = None  # one slot's rate, smoothed over batches
        self._running: dict[int, tuple[float, int]] = {}  # batch id -> (dispatched at, tokens)
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

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    def check_room(self) -> None:
        """Refuse before any work is spent on a request (parsing done, tokenizing not) when the
        queue is already full, so that refusals stay cheap however many arrive."""
        self._refuse_if_full(1)

    def _refuse_if_full(self, tokens: int) -> None:
        limit = self._config.max_queue_tokens
        # An idle queue takes any request the per-request limit let through, so that a limit set
        # below one request's size refuses nothing on its own.
        if self._queued_tokens and self._queued_tokens + tokens > limit:
            raise QueueFull(
                f"{self._queued_tokens} tokens queued, room for {limit} (max_queue_tokens)",
                self.retry_after_s(),
            )
        most = self._config.max_queue_wait_s
        if most is not None:
            wait = self.expected_wait_s()
            if wait > most:
                raise QueueFull(
                    f"the work ahead would take {wait * 1000:.0f} ms, at most {most * 1000:.0f} ms "
                    "(max_queue_wait_ms)",
                    max(1, min(60, math.ceil(wait))),
                )

    def expected_wait_s(self) -> float:
        """How long a request queued now would wait for its batch to start: the queued tokens and
        what is left of the running batches, at the rate measured so far (0 before any batch)."""
        rate = self._tokens_per_s
        if not rate:
            return 0.0
        now = time.perf_counter()
        left = sum(max(0.0, tokens / rate - (now - at)) for at, tokens in self._running.values())
        return (left + self._queued_tokens / rate) / self._config.concurrent_batches

    def submit(self, texts: TokenizedBatch) -> asyncio.Future[EmbedResult]:
        tokens = int(texts.lengths.sum())
        self._refuse_if_full(tokens)
        loop = asyncio.get_running_loop()
        pending = _Pending(texts, tokens, loop.create_future(), time.perf_counter())
        self._queue.append(pending)
        self._queued_texts += len(texts)
        self._queued_tokens += tokens
        pending.future.add_done_callback(functools.partial(self._on_done, pending))
        self._wake.set()
        if self._batch_full():
            self._full.set()
        return pending.future

    def _batch_full(self) -> bool:
        """Whether the queue holds a whole batch (`_take_batch`): no reason to wait for more."""
        passes = self._config.pass_tokens
        return self._queued_texts >= self._config.max_batch_size or bool(
            passes and self._queued_tokens >= passes
        )

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained, from the throughput seen so far."""
        if not self._tokens_per_s:
            return 1
        return max(1, min(60, math.ceil(self._queued_tokens / self._tokens_per_s)))

    def _on_done(self, pending: _Pending, future: asyncio.Future[EmbedResult]) -> None:
        if future.cancelled() and not pending.dispatched:  # dropped before its batch: free its room
            self._queued_texts -= len(pending.texts)
            self._queued_tokens -= pending.tokens

    def _take_batch(self) -> list[_Pending]:
        """The queue's head, up to `max_batch_size` texts and, where passes are cut
        (`pass_tokens`: graphed passes on a GPU), up to one pass of tokens; the first request is
        taken whatever its size.

        One pass a batch: a batch of 68 texts of 512 tokens ran as a pass of 64 rows and one of 4,
        which costs the device nearly a full pass's launch and small kernels for 4 rows (BERT-large
        on an H100: the server at 85% of its forward pass, the same path fed whole passes at
        99-100%); and a batch of several passes runs them one after another on one worker thread,
        while batches of one pass each go to the device from as many threads at once, on both of the
        engine's lanes. So the text cap binds only on short texts, where a pass holds many: 1,024
        texts of 24 tokens are 24,576 tokens, less than one pass
        (`InferenceSettings.resolved_max_batch_size`)."""
        batch: list[_Pending] = []
        count = tokens = 0
        limit = self._config.pass_tokens
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # cancelled while queued; its room was freed then
                self._queue.popleft()
                continue
            size = len(head.texts)
            if batch and count + size > self._config.max_batch_size:
                break
            if batch and limit is not None and tokens + head.tokens > limit:
                break
            pending = self._queue.popleft()
            batch.append(pending)
            count += size
            tokens += pending.tokens
        self._queued_texts -= count
        self._queued_tokens -= tokens
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
            if busy and self._config.max_wait_s > 0 and not self._batch_full():
                delay = self._queue[0].enqueued + self._config.max_wait_s - time.perf_counter()
                if delay > 0:
                    self._full.clear()
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), delay)
            batch = self._take_batch()
            if not batch:  # everything queued was cancelled
                self._slots.release()
                continue
            now = time.perf_counter()
            for pending in batch:
                pending.dispatched = now
            self._running[id(batch)] = (now, sum(pending.tokens for pending in batch))
            work = loop.run_in_executor(self._executor, self._process, batch)
            work.add_done_callback(functools.partial(self._deliver, batch))

    def _deliver(self, batch: list[_Pending], work: asyncio.Future[_Outcome]) -> None:
        self._slots.release()
        self._in_flight_texts -= sum(len(p.texts) for p in batch)
        self._running.pop(id(batch), None)
        error = work.exception()
        if error is not None:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        outcome = work.result()
        for pending, result in zip(batch, outcome.results, strict=True):
            if not pending.future.done():  # done: cancelled while its batch ran
                pending.future.set_result(result)
        if outcome.stats is not None:
            rate = outcome.stats.tokens / max(outcome.seconds, 1e-6)
            old = self._tokens_per_s
            self._tokens_per_s = rate if old is None else 0.8 * old + 0.2 * rate
            if self._on_batch is not None:
                self._on_batch(outcome.stats)

    def _one_chunk(self, texts: int, padded: int, tokens: int, launch_cost_tokens: int) -> bool:
        """Whether `plan_chunks` would make the whole batch one chunk: within the size caps, and
        padding every text to the longest wastes at most one pass's launch (then so does every
        shortest-first prefix, so its greedy never cuts). Such a batch (requests of similar
        lengths, the common case under load) is embedded as it is, in request order: no sort, no
        gather of its token ids, no scatter of its rows, and no Python step per text while the
        engine process's one interpreter is what every batch waits on."""
        return (
            texts <= self._config.max_batch_size
            and padded <= self._config.max_chunk_tokens
            and padded - tokens <= launch_cost_tokens
        )

    def _process(self, batch: list[_Pending]) -> _Outcome:
        """Runs in a worker thread: pack the token ids, chunk, forward, and split results per request."""
        started = time.perf_counter()
        with self._lease() as model:
            tokenized = TokenizedBatch.concat([pending.texts for pending in batch])
            lengths = tokenized.lengths
            passes, padded = 1, int(lengths.max()) * len(lengths)
            if self._one_chunk(len(lengths), padded, int(lengths.sum()), model.launch_cost_tokens):
                out = model.embed(tokenized)
            else:
                chunks = plan_chunks(
                    lengths.tolist(),
                    self._config.max_batch_size,
                    self._config.max_chunk_tokens,
                    model.launch_cost_tokens,
                )
                out = np.empty((len(tokenized), model.dimension), dtype=np.float32)
                passes, padded = len(chunks), 0
                for chunk in chunks:
                    out[chunk] = model.embed(tokenized.take(chunk))
                    padded += int(lengths[chunk[-1]]) * len(chunk)
        outcome = _Outcome(
            stats=BatchStats(len(tokenized), int(lengths.sum()), padded, passes),
            seconds=time.perf_counter() - started,
        )
        start = 0
        for pending in batch:
            end = start + len(pending.texts)
            queued = pending.dispatched - pending.enqueued
            outcome.results.append(EmbedResult(out[start:end], pending.tokens, queued))
            start = end
        return outcome
