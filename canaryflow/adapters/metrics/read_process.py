"""Batched reads asked and parsed in a process of their own.

At 500 rollouts the batched reads (`batched.py`: the HTTP answers, their JSON, the per-point
dictionaries, each step's `VersionReading`s) were over half of the controller's interpreter time,
and the controller's threads share one interpreter: the reconcile jobs waited on the reads' parsing
while the machine's second core had room. `ProcessReads` is a `batched.ChunkReader` that sends each
chunk's arms to a reader process, which runs the same `batched.query_chunk` on its own
`PrometheusSource` and sends the readings back pickled (unpickling them is C code, a small part of
building them). The readings are the same objects' values, so the steps get the same looks.

- Isolation as on the reader's threads: the process answers each chunk on a pool of WORKERS threads
  of its own, so a slow query holds one of them and its chunk, not the others; a failed query comes
  back as its exception (the chunk's steps read it, as before).
- A reader process that dies fails the chunks in flight (`MetricsError`) and is started again for
  the next chunk; one that stops answering is given up after `answer_timeout_s`.
- The reader process runs without the cyclic garbage collector while it parses (it tripled the
  parse of a 1,000-rollout answer), collecting between chunks every COLLECT_EVERY_S.
- The process is started with `spawn` (no copy of the controller's threads and locks), on the first
  chunk, and ends when `close` is called or the controller exits (its pipe closes).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any

from canaryflow.adapters.metrics import MetricsError
from canaryflow.adapters.metrics.batched import WORKERS, Arms, ChunkReadings, query_chunk
from canaryflow.adapters.metrics.prometheus import FAMILIES, PrometheusSource

log = logging.getLogger(__name__)

COLLECT_EVERY_S = 30.0  # the reader process' cyclic garbage collection (off while it parses)


class ProcessReads:
    """`ChunkReader` whose chunks are read by a process of its own (`query_chunk` there)."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, workers: int = WORKERS) -> None:
        self.url = url
        self._timeout_s = timeout_s
        self._workers = workers
        # A chunk is every family's query, each up to the source's timeout, and the wait for a worker.
        self.answer_timeout_s = 2 * len(FAMILIES) * (timeout_s + 1.0)
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[int, Future[ChunkReadings]] = {}
        self._conn: Connection | None = None
        self._process: Any = None
        self._closed = False

    def __call__(self, every_ms: int, first_ms: int, last_ms: int, arms: tuple[Arms, ...]) -> ChunkReadings:
        future: Future[ChunkReadings] = Future()
        with self._lock:
            if self._closed:
                raise MetricsError("the metrics reader process is stopped")
            conn = self._connection()
            ask = next(self._ids)
            self._pending[ask] = future
            try:
                conn.send((ask, every_ms, first_ms, last_ms, arms))
            except (OSError, ValueError) as exc:  # the process is gone: the listener fails the rest
                del self._pending[ask]
                raise MetricsError(f"metrics reader process: {exc}") from exc
        try:
            return future.result(self.answer_timeout_s)
        except FutureTimeout:
            with self._lock:
                self._pending.pop(ask, None)
            raise MetricsError(
                f"metrics reader process: no answer within {self.answer_timeout_s:.0f} s"
            ) from None

    def _connection(self) -> Connection:
        """The pipe to the reader process, started if there is none (under the lock)."""
        if self._conn is None:
            context = get_context("spawn")
            ours, theirs = context.Pipe()
            self._process = context.Process(
                target=_serve,
                args=(theirs, self.url, self._timeout_s, self._workers),
                name="canaryflow-metrics-read-process",
                daemon=True,
            )
            self._process.start()
            theirs.close()
            self._conn = ours
            threading.Thread(
                target=self._listen, args=(ours,), name="canaryflow-metrics-read-answers", daemon=True
            ).start()
        return self._conn

    def _listen(self, conn: Connection) -> None:
        """Hands each answer to the chunk that asked; when the process goes, fails those in flight."""
        while True:
            try:
                ask, ok, payload = conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._pending.pop(ask, None)
            if future is None:  # given up on (timed out)
                continue
            if ok:
                future.set_result(payload)
            else:
                future.set_exception(payload)
        with self._lock:
            if self._conn is conn:
                self._conn = None
            failed, self._pending = list(self._pending.values()), {}
        for future in failed:
            future.set_exception(MetricsError("the metrics reader process exited"))
        if not self._closed:
            log.warning("metrics reader process exited; it is started again for the next read")

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops the reader process; chunks in flight fail."""
        with self._lock:
            self._closed = True
            conn, process = self._conn, self._process
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
        if process is not None:
            process.join(timeout_s)
            if process.is_alive():
                process.kill()
                process.join(timeout_s)
        if conn is not None:
            conn.close()


def _serve(conn: Connection, url: str, timeout_s: float, workers: int) -> None:
    """The reader process: each chunk asked on `workers` threads, answered as it is read; ends on
    None or when the controller's end of the pipe closes."""
    source = PrometheusSource(url, timeout_s=timeout_s)
    send = threading.Lock()
    # An answer is hundreds of thousands of small objects (1,000 rollouts: 212,000 series): the
    # cyclic collector, triggered by their allocation, tripled the parse (orjson 1.1-1.4 s with it,
    # 0.3-0.4 s without). What is read here holds no cycles; what else might (an exception's
    # traceback) is collected between chunks, at most every COLLECT_EVERY_S.
    gc.disable()
    collected = [time.monotonic()]

    def answer(ask: int, every_ms: int, first_ms: int, last_ms: int, arms: tuple[Arms, ...]) -> None:
        try:
            reply: tuple[int, bool, Any] = (ask, True, query_chunk(source, every_ms, first_ms, last_ms, arms))
        except Exception as exc:  # the chunk's steps read it, as on the reader's threads
            reply = (ask, False, exc)
        with send:
            try:
                conn.send(reply)
            except (OSError, ValueError):
                pass  # the controller is gone
            except Exception as exc:  # an exception that does not pickle
                conn.send((ask, False, RuntimeError(repr(exc))))
            del reply
            if time.monotonic() - collected[0] > COLLECT_EVERY_S:
                gc.collect()
                collected[0] = time.monotonic()

    with ThreadPoolExecutor(workers, thread_name_prefix="canaryflow-metrics") as pool:
        while True:
            try:
                asked = conn.recv()
            except (EOFError, OSError):
                break
            if asked is None:
                break
            pool.submit(answer, *asked)
        pool.shutdown(wait=False, cancel_futures=True)
