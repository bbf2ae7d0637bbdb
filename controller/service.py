"""The controller process: the HTTP app and the reconcile loop, sharing one store.

The loop runs in one thread and is the only thing that moves rollouts (one writer of rollout state);
webhook handlers only append to the inbox and wake it. Stopping is cooperative: the loop finishes its
tick, the server its requests.
"""

from __future__ import annotations

import fcntl
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import uvicorn
from fastapi import FastAPI

from canaryflow.kernel.ports import Notifier
from controller.controller_settings import ControllerSettings
from controller.drift_monitor import DriftMonitor
from controller.leadership import Leadership, Solo
from controller.observability import event
from controller.reconcile import Reconciler
from controller.rollout.store import RolloutStore
from inference.connection_guard import ConnectionLimits, guarded_protocol


class DatabaseInUse(RuntimeError):
    """Another controller process holds this database: two loops would run every step twice."""


def lock_database(db_path: Path) -> IO[bytes]:
    """An exclusive lock beside the database for the life of the process (released by the OS, even on
    SIGKILL), so that a second controller on the same file refuses to start instead of double-acting."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(db_path.with_name(db_path.name + ".lock"), "a+b")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise DatabaseInUse(f"db_path: {db_path} is in use by another controller process") from exc
    return handle


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


class LoopWake:
    """How an accepted delivery wakes the reconcile loop at once: the HTTP app calls it, the loop waits
    on `event` between ticks (so an event does not wait a whole interval)."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.event = threading.Event()

    def __call__(self) -> None:
        self.reconciler.notify()
        self.event.set()


class ControllerService:
    """The controller's running parts and their lifecycle: start, serve, stop. It builds nothing: the
    composition root (`canaryflow.app.wiring.assemble_controller`) hands it the built parts."""

    def __init__(
        self,
        settings: ControllerSettings,
        store: RolloutStore,
        reconciler: Reconciler,
        app: FastAPI,
        wake: LoopWake,
        *,
        notifier: Notifier | None = None,
        drift: DriftMonitor | None = None,
        leadership: Leadership | None = None,
        closing: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.settings, self.store, self.reconciler, self.app = settings, store, reconciler, app
        self.notifier, self.drift = notifier, drift
        self.leadership: Leadership = leadership or Solo()
        self._lease_thread: threading.Thread | None = None
        self._wake = wake.event
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drift_thread: threading.Thread | None = None
        self._closing = tuple(closing)  # ended by `close` after the jobs (the metrics reader)

    def run_loop(self) -> None:
        """Ticks until stopped; a webhook wakes it early (`LoopWake`)."""
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.reconciler.tick()
            except Exception as exc:  # one bad tick must not end the loop; the next one retries
                event("tick failed", logging.ERROR, error=repr(exc))
            self._wake.wait(self.settings.reconcile_interval_s)

    def start_loop(self) -> threading.Thread:
        # Leadership first, on its own thread: the loop ticks (and the drift monitor reads) only while
        # this replica leads; a follower serves webhooks and the API (controller/leadership.py).
        lease = threading.Thread(target=self.leadership.run, args=(self._stop,), name="canaryflow-lease")
        self._lease_thread = lease
        lease.daemon = True
        lease.start()
        self._thread = threading.Thread(target=self.run_loop, name="canaryflow-reconcile", daemon=True)
        self._thread.start()
        if self.drift is not None:  # its own thread: reading logs never delays a rollout's tick
            args = (self._stop, self.settings.drift.interval_s, lambda: self.leadership.owns(None))
            self._drift_thread = threading.Thread(target=self.drift.run, args=args, name="canaryflow-drift")
            self._drift_thread.daemon = True
            self._drift_thread.start()
        return self._thread

    def stop_loop(self, timeout_s: float = 30.0) -> bool:
        """Stops the loop (ticks may still be run by hand); True when it ended within `timeout_s`."""
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._drift_thread, self._lease_thread):
            if thread is not None:
                thread.join(timeout_s)
        if self.notifier is not None:  # the last transitions' notices get a few seconds to leave
            self.notifier.close(min(timeout_s, 5.0))
        return not (self._thread and self._thread.is_alive())

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stops the loop and the reconcile workers; True when all ended within `timeout_s`: then
        nothing of theirs writes after this returns. A worker stuck on a dependency ends when its call
        times out (False until then: leave what it uses in place)."""
        self._stop.set()  # the loop starts no tick, the workers no job, the running jobs end early
        self._wake.set()
        workers_done = self.reconciler.close(timeout_s)
        loop_done = self.stop_loop(timeout_s)
        for close in self._closing:  # a job still stuck reads no new look after this: harmless
            close()
        return loop_done and workers_done

    def serve(self) -> None:
        """Blocks serving HTTP on settings.host:port with the loop running beside it."""
        # uvicorn re-raises the SIGTERM it caught once it has shut down; ending with SystemExit then (not
        # the default action, death) lets the loop finish its tick and the store checkpoint its WAL.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _exit_cleanly)
        self.start_loop()
        event(
            "controller serving",
            host=self.settings.host,
            port=self.settings.port,
            db=self.store.db.describe(),
        )
        s = self.settings
        try:  # request reads bounded in time, connections per address in number: a slow client is cut
            uvicorn.run(
                self.app, host=self.settings.host, port=self.settings.port, log_config=None, access_log=False,
                http=guarded_protocol("auto", ConnectionLimits(s.header_timeout_s, s.body_timeout_s,
                                                               s.max_connections_per_client)),
            )  # fmt: skip
        finally:
            if self.close():
                self.store.close()  # checkpoints the WAL: a clean stop leaves one complete file
            event("controller stopped", db=self.store.db.describe())
