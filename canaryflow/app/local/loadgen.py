"""An open-loop load generator for the embeddings API (or, with `V2Inference`, the Open Inference
Protocol that MLServer, Triton and KServe runtimes speak): a steady request rate, bounded in time.

Open loop (requests start on a schedule, not when the previous one returns) so that a slow canary
shows up as latency instead of silently lowering its own load.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from canaryflow.app.local.sentences import sentence


@dataclass(frozen=True)
class V2Inference:
    """Open Inference Protocol requests (`POST /v2/models/<model>/infer`) of one row of `features`;
    the answering version is the one the response body names (`model_version`)."""

    features: tuple[str, ...]

    def body(self, rng: random.Random) -> dict[str, object]:
        return {
            "inputs": [
                {"name": name, "shape": [1], "datatype": "FP64", "data": [round(rng.uniform(0, 10), 3)]}
                for name in self.features
            ]
        }


@dataclass
class LoadStats:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    shed: int = 0  # not sent: the client's in-flight bound was reached (server saturated)
    by_version: dict[str, int] = field(default_factory=dict)


class LoadGenerator:
    """Sends `rate` requests/s of 1..`max_batch` sentences to `url` until stopped or `duration_s`."""

    def __init__(
        self,
        url: str,
        model: str,
        rate: float = 20.0,
        max_batch: int = 1,
        duration_s: float = 3600.0,
        max_in_flight: int = 64,
        seed: int = 0,
        protocol: V2Inference | None = None,
    ) -> None:
        self.protocol = protocol
        path = f"/v2/models/{model}/infer" if protocol is not None else "/v1/embeddings"
        self.url = url.rstrip("/") + path
        self.model = model
        self.rate = rate
        self.max_batch = max_batch
        self.duration_s = duration_s
        self.max_in_flight = max_in_flight
        self.stats = LoadStats()
        # What each input says; swapped while running to change the traffic's topics (the demo's drift).
        self.sentence: Callable[[random.Random], str] = sentence
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LoadGenerator:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="loadgen", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _body(self) -> dict[str, object]:
        if self.protocol is not None:
            return self.protocol.body(self._rng)
        batch = [self.sentence(self._rng) for _ in range(self._rng.randint(1, self.max_batch))]
        return {"input": batch, "model": self.model}

    def _version(self, resp: httpx.Response) -> str:
        if self.protocol is None:
            return resp.headers.get("X-Model-Version", "?")
        try:
            return str(resp.json().get("model_version", "?"))
        except ValueError:
            return "?"

    async def _one(self, client: httpx.AsyncClient, sem: asyncio.Semaphore) -> None:
        body = self._body()
        key = f"user-{self._rng.randrange(1_000_000)}"
        try:
            resp = await client.post(self.url, json=body, headers={"X-Canary-Key": key})
            version = self._version(resp)
            self.stats.by_version[version] = self.stats.by_version.get(version, 0) + 1
            if resp.status_code == 200:
                self.stats.ok += 1
            else:
                self.stats.failed += 1
        except httpx.HTTPError:
            self.stats.failed += 1
        finally:
            sem.release()

    async def _run(self) -> None:
        sem = asyncio.Semaphore(self.max_in_flight)
        limits = httpx.Limits(max_connections=self.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            start = time.monotonic()
            next_at = start
            while not self._stop.is_set() and time.monotonic() - start < self.duration_s:
                # Poisson arrivals at the target rate.
                next_at += self._rng.expovariate(self.rate)
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if sem.locked():
                    # The server is saturated: shed the request rather than queue forever.
                    self.stats.shed += 1
                    continue
                await sem.acquire()
                self.stats.sent += 1
                task = asyncio.create_task(self._one(client, sem))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=30)
