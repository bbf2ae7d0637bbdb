"""Shadow traffic: a sampled copy of baseline requests also goes to the canary, off the caller's path.

The caller already has the baseline's answer; the copy only measures how far the canary's embedding
of the same input lies from it (cosine distance), which catches a canary that is fast and healthy
but semantically off. Copies are bounded in number and dropped, never queued, when over the bound.
"""

from __future__ import annotations

import asyncio
import random

import numpy as np

from inference.backend import EmbeddingBackend
from inference.batching import EmbedResult, QueueFull
from inference.metrics import ServerMetrics
from inference.models.base import TokenizedBatch
from inference.server import UnknownVersion


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.clip(1.0 - num / np.maximum(den, 1e-12), 0.0, 2.0)


class Shadow:
    def __init__(self, backend: EmbeddingBackend, metrics: ServerMetrics, max_in_flight: int) -> None:
        self._backend = backend
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()

    def maybe_copy(
        self, served: str, tokens: TokenizedBatch, texts: list[str] | None, result: EmbedResult
    ) -> None:
        table = self._backend.table
        if table is None or not table.config.shadow.enabled or table.role_of(served) != "baseline":
            return
        if random.random() >= table.config.shadow.sample_rate:
            return
        canary = table.version_with_role("canary")
        canary_info, served_info = self._backend.info(canary or ""), self._backend.info(served)
        if canary is None or canary_info is None or served_info is None:
            return
        same_tokenizer = canary_info.tokenizer.spec == served_info.tokenizer.spec
        if not same_tokenizer and texts is None:  # token ids of the baseline's vocabulary only
            return
        counter = self._metrics.shadow_requests
        if len(self._tasks) >= self._max_in_flight:
            counter.labels(table.model, canary, "dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(
            self._compare(table.model, served, canary, tokens if same_tokenizer else texts, result.embeddings)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _compare(
        self, model: str, baseline: str, canary: str, inputs: TokenizedBatch | list[str] | None,
        base: np.ndarray,
    ) -> None:  # fmt: skip
        try:
            if not isinstance(inputs, TokenizedBatch):  # the canary tokenizes differently
                info = self._backend.info(canary)
                if info is None or inputs is None:
                    raise UnknownVersion(canary)
                loop = asyncio.get_running_loop()
                inputs = await loop.run_in_executor(None, info.tokenizer.tokenize, inputs)
            other = (await self._backend.submit(canary, inputs)).embeddings
        except QueueFull:
            self._metrics.shadow_requests.labels(model, canary, "dropped").inc()
            return
        except Exception:
            self._metrics.shadow_requests.labels(model, canary, "error").inc()
            return
        self._metrics.shadow_requests.labels(model, canary, "ok").inc()
        histogram = self._metrics.shadow_distance.labels(model, canary, baseline)
        for distance in cosine_distances(base, other):
            histogram.observe(float(distance))

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
