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
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import uvicorn

from canaryflow.kernel.ports import ApprovalGate, Notifier, Registry, WorkflowEngine
from controller.actions import RolloutActions
from controller.app import ControllerContext, create_app
from controller.console.routes import mount
from controller.drift import DriftCollector, DriftMonitor
from controller.observability import ControllerMetrics, NoticeOutboxCollector, NotifierHealth, event
from controller.reconcile import PolicyLoader, Reconciler, default_policy_loader
from controller.rollout.actions import ActionStore
from controller.rollout.store import RolloutStore
from controller.settings import ControllerSettings


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


class ControllerService:
    def __init__(
        self,
        settings: ControllerSettings,
        store: RolloutStore,
        engine: WorkflowEngine,
        registry: Registry | None,
        *,
        approval_gate: ApprovalGate | None = None,
        policy_loader: PolicyLoader = default_policy_loader,
        clock: Callable[[], float] = time.time,
        notifier: Notifier | None = None,
        link_templates: Mapping[str, str] | None = None,
        drift: DriftMonitor | None = None,
    ) -> None:
        self.settings, self.store, self.notifier = settings, store, notifier
        self.metrics = ControllerMetrics(store, lambda name: self.reconciler.max_duration_s(name))
        self.drift = drift
        if drift is not None:
            self.metrics.registry.register(DriftCollector(drift))
        if isinstance(notifier, NotifierHealth):
            self.metrics.registry.register(NoticeOutboxCollector(notifier))
        self.reconciler = Reconciler(
            settings,
            store,
            engine,
            registry,
            self.metrics,
            approval_gate=approval_gate,
            policy_loader=policy_loader,
            clock=clock,
            notifier=notifier,
            link_templates=link_templates,
        )
        if drift is not None and drift.responder is not None:  # no rollout starts mid-rollback
            drift.responder.guard(self.reconciler.model_lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        link = getattr(engine, "link", None)
        self.context = ControllerContext(
            settings=settings,
            store=store,
            metrics=self.metrics,
            wake=self._on_delivery,
            workflow_link=link if callable(link) else None,
            clock=clock,
            drift=drift,
        )
        self.app = create_app(self.context)
        self.actions = RolloutActions(store, ActionStore(settings.db_path), self.reconciler, engine, clock)
        self.reconciler.actions = self.actions
        self.sessions = mount(self.app, self.context, self.actions)  # console, login, actions, the gate
        self._drift_thread: threading.Thread | None = None

    def _on_delivery(self) -> None:
        self.reconciler.notify()
        self._wake.set()

    def run_loop(self) -> None:
        """Ticks until stopped; a webhook wakes it early so an event does not wait a whole interval."""
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.reconciler.tick()
            except Exception as exc:  # one bad tick must not end the loop; the next one retries
                event("tick failed", logging.ERROR, error=repr(exc))
            self._wake.wait(self.settings.reconcile_interval_s)

    def start_loop(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run_loop, name="canaryflow-reconcile", daemon=True)
        self._thread.start()
        if self.drift is not None:  # its own thread: reading logs never delays a rollout's tick
            args = (self._stop, self.settings.drift.interval_s)
            self._drift_thread = threading.Thread(target=self.drift.run, args=args, name="canaryflow-drift")
            self._drift_thread.daemon = True
            self._drift_thread.start()
        return self._thread

    def stop_loop(self, timeout_s: float = 30.0) -> bool:
        """Stops the loop (ticks may still be run by hand); True when it ended within `timeout_s`."""
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._drift_thread):
            if thread is not None:
                thread.join(timeout_s)
        if self.notifier is not None:  # the last transitions' notices get a few seconds to leave
            self.notifier.close(min(timeout_s, 5.0))
        return not (self._thread and self._thread.is_alive())

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stops the loop and the reconcile workers; True when all ended within `timeout_s` (a worker
        stuck on a dependency ends when its call times out)."""
        loop_done = self.stop_loop(timeout_s)
        return self.reconciler.close(timeout_s) and loop_done

    def serve(self) -> None:
        """Blocks serving HTTP on settings.host:port with the loop running beside it."""
        # uvicorn re-raises the SIGTERM it caught once it has shut down; ending with SystemExit then (not
        # the default action, death) lets the loop finish its tick and the store checkpoint its WAL.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _exit_cleanly)
        self.start_loop()
        event("controller serving", host=self.settings.host, port=self.settings.port, db=str(self.store.path))
        try:
            uvicorn.run(
                self.app, host=self.settings.host, port=self.settings.port, log_config=None, access_log=False
            )
        finally:
            if self.close():
                self.store.close()  # checkpoints the WAL: a clean stop leaves one complete file
            event("controller stopped", db=str(self.store.path))
