"""A bounded pool for the reconcile loop: one job per key (a model, the inbox), never two at once.

The loop used to do every rollout's work on its one thread, so a dependency that hung (MLflow retrying
for minutes) froze every rollout. Now each model's rollouts are one job on a small pool: a job stuck on
a dependency holds one worker and its own model only; the tick waits for the round at most
`deadline_s`, and the next tick skips a key whose job is still running instead of queueing behind it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

log = logging.getLogger(__name__)


class KeyedWorkers:
    """`max_workers=0` runs every job on the calling thread (a profile sees it; nothing is isolated)."""

    def __init__(self, max_workers: int) -> None:
        self._inline = max_workers == 0
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, max_workers), thread_name_prefix="canaryflow-reconcile"
        )
        self._running: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        # Set by `shutdown`: a job checks it between its units of work (a rollout) and returns, so a
        # stop ends every job within about one unit (`Reconciler` checks it before each rollout).
        self.stopping = threading.Event()

    def submit(self, key: str, job: Callable[[], None]) -> Future[None] | None:
        """Runs `job` unless the previous job of `key` is still running (then None: skipped)."""
        with self._lock:
            if self.stopping.is_set():
                return None
            previous = self._running.get(key)
            if previous is not None and not previous.done():
                return None
            if not self._inline:
                try:
                    future = self._pool.submit(_logged, key, job)
                except RuntimeError:  # shut down: the process is stopping, the next start takes it
                    return None
                self._running[key] = future
                return future
        done: Future[None] = Future()
        _logged(key, job)
        done.set_result(None)
        return done

    def busy(self, key: str) -> bool:
        with self._lock:
            future = self._running.get(key)
            return future is not None and not future.done()

    def wait(self, futures: list[Future[None]], deadline_s: float) -> list[Future[None]]:
        """Waits for `futures` up to `deadline_s`; returns those still running."""
        return _wait(futures, deadline_s)

    def shutdown(self, timeout_s: float) -> bool:
        """Stops taking jobs, tells the running ones to stop (`stopping`) and waits up to `timeout_s`
        for them; True when all ended: nothing of theirs runs after that. False names a job stuck in a
        dependency's call past the deadline (logged): its caller must not remove what it uses."""
        with self._lock:
            self.stopping.set()
            running = {k: f for k, f in self._running.items() if not f.done()}
        self._pool.shutdown(wait=False, cancel_futures=True)
        pending = _wait(list(running.values()), timeout_s)
        for key, future in running.items():
            if future in pending:
                log.warning("reconcile job %s still running %.1f s after the stop", key, timeout_s)
        return not pending


def _wait(futures: list[Future[None]], timeout_s: float) -> list[Future[None]]:
    """The futures not done after up to `timeout_s`. A job the shutdown cancelled before it started
    counts as done (`concurrent.futures.wait` would count it pending until the timeout: it is never
    marked as notified)."""
    end = time.monotonic() + timeout_s
    pending = [f for f in futures if not f.done()]
    while pending and (left := end - time.monotonic()) > 0:
        wait(pending, timeout=min(left, 0.05), return_when=FIRST_COMPLETED)
        pending = [f for f in pending if not f.done()]
    return pending


def _logged(key: str, job: Callable[[], None]) -> None:
    try:
        job()
    except Exception:  # a job's own error boundary records rollout errors; this is the last resort
        log.exception("reconcile job %s failed", key)


class Precedence:
    """Urgent work first: while a new event is being turned into its rollout's first commit, the
    rollouts' jobs wait between two rollouts, so the event's work gets the interpreter (one at a time:
    the GIL) instead of a ninth of it beside eight jobs judging looks. Bounded: once an urgent spell
    has lasted `max_wait_s` (a registry or git call hanging), the jobs go on regardless."""

    def __init__(self, max_wait_s: float) -> None:
        self.max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._clear = threading.Event()
        self._clear.set()
        self._urgent = 0
        self._since = 0.0

    def begin(self) -> None:
        with self._lock:
            if self._urgent == 0:
                self._since = time.monotonic()
                self._clear.clear()
            self._urgent += 1

    def end(self) -> None:
        with self._lock:
            self._urgent -= 1
            if self._urgent == 0:
                self._clear.set()

    def give_way(self) -> None:
        """Returns at once unless urgent work runs; then when it ends, or its spell is `max_wait_s` old."""
        if self._clear.is_set():
            return
        with self._lock:
            left = self._since + self.max_wait_s - time.monotonic()
        if left > 0:
            self._clear.wait(left)
