"""The controller's own metrics (one registry per controller, so tests and benchmarks can run several)
and its structured JSON log lines."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from canaryflow.kernel.contracts import metrics as names
from canaryflow.kernel.contracts.phases import RolloutPhase
from controller.rollout.store import RolloutStore

_PHASES: tuple[RolloutPhase, ...] = tuple(RolloutPhase)


class _RolloutsByPhase(Collector):
    """Read from the store at scrape time, so the gauge is right after a restart too."""

    def __init__(self, store: RolloutStore) -> None:
        self.store = store

    def collect(self) -> Any:
        family = GaugeMetricFamily(names.CONTROLLER_ROLLOUTS, "Rollouts by state", labels=["state"])
        counts = self.store.counts_by_phase()
        for phase in _PHASES:
            family.add_metric([phase], counts.get(phase, 0))
        yield family
        labels = ["model", "status"]
        steps = GaugeMetricFamily(names.CONTROLLER_STEPS, "Traffic steps by verdict", labels=labels)
        for (model, status), count in sorted(self.store.step_counts().items()):
            steps.add_metric([model, status], count)
        yield steps


class _ActiveRollouts(Collector):
    """Each active rollout's step and deadline, read at scrape time: what a dashboard shows per model and
    what the "stuck past its max duration" alert compares with the clock."""

    def __init__(self, store: RolloutStore, max_duration_s: Callable[[str], float | None]) -> None:
        self.store, self.max_duration_s = store, max_duration_s

    def collect(self) -> Any:
        labels = ["rollout", "model", "state"]
        step = GaugeMetricFamily(
            names.CONTROLLER_ROLLOUT_STEP, "Traffic step reached (1-based)", labels=labels
        )
        deadline = GaugeMetricFamily(
            names.CONTROLLER_ROLLOUT_DEADLINE, "Unix time the policy's max duration runs out", labels=labels
        )
        for record in self.store.rollouts(active_only=True):
            values = [record.id, record.model, record.phase]
            step.add_metric(values, 0 if record.step_index is None else record.step_index + 1)
            limit = self.max_duration_s(record.policy)
            if record.started_at is not None and limit is not None:
                deadline.add_metric(values, record.started_at + limit)
        yield step
        yield deadline


class _WaitingOnDependency(Collector):
    """Active rollouts whose waiting reason names an outside dependency: an outage shows as a count
    by dependency (0 when all is well), read from the store at scrape time."""

    def __init__(self, store: RolloutStore) -> None:
        self.store = store

    def collect(self) -> Any:
        from controller.dependencies import DEPENDENCIES, dependency_of

        family = GaugeMetricFamily(
            names.CONTROLLER_WAITING_ON_DEPENDENCY,
            "Active rollouts waiting because an outside dependency fails",
            labels=["dependency"],
        )
        counts = dict.fromkeys(DEPENDENCIES, 0)
        for record in self.store.rollouts(active_only=True):
            dependency = dependency_of(record.waiting_reason)
            if dependency is not None:
                counts[dependency] += 1
        for dependency, count in counts.items():
            family.add_metric([dependency], count)
        yield family


class _HeldInMemory(Protocol):
    memory_only: int


class NotifierHealth(Protocol):
    """What the notifier says about its outbox (the notify adapter's `BackgroundNotifier`): whether
    notices are still written to it, and per channel how many were queued in memory only."""

    @property
    def durable(self) -> bool: ...

    def stats(self) -> Mapping[str, _HeldInMemory]: ...


class NoticeOutboxCollector(Collector):
    """An unusable outbox is logged once and otherwise silent (delivery goes on from memory), so a
    restart would lose what is queued without anyone knowing; this makes it a number to alert on."""

    def __init__(self, notifier: NotifierHealth) -> None:
        self.notifier = notifier

    def collect(self) -> Any:
        durable = GaugeMetricFamily(
            names.CONTROLLER_NOTICE_OUTBOX_DURABLE,
            "1 while queued notices are written to the outbox, 0 when they are held in memory only",
        )
        durable.add_metric([], 1.0 if self.notifier.durable else 0.0)
        held = CounterMetricFamily(
            names.CONTROLLER_NOTICES_MEMORY_ONLY,
            "Notices queued without an outbox row (lost if the controller is killed before sending)",
            labels=[names.CHANNEL_LABEL],
        )
        for channel, stats in sorted(self.notifier.stats().items()):
            held.add_metric([channel], stats.memory_only)
        yield durable
        yield held


class ControllerMetrics:
    def __init__(
        self, store: RolloutStore, max_duration_s: Callable[[str], float | None] | None = None
    ) -> None:
        """`max_duration_s`: a policy name's max duration (None when unknown); without it no deadlines."""
        self.registry = CollectorRegistry()
        self.webhooks_received = Counter(
            names.CONTROLLER_WEBHOOKS_RECEIVED,
            "Webhook deliveries received",
            ["source"],
            registry=self.registry,
        )
        self.webhooks_rejected = Counter(
            names.CONTROLLER_WEBHOOKS_REJECTED,
            "Webhook deliveries refused",
            ["source", "status"],
            registry=self.registry,
        )
        self.webhooks_duplicate = Counter(
            names.CONTROLLER_WEBHOOKS_DUPLICATE,
            "Redelivered webhook ids acknowledged without effect",
            ["source"],
            registry=self.registry,
        )
        self.decision_latency = Histogram(
            names.CONTROLLER_DECISION_LATENCY,
            "From the registry event to the rollout's final state",
            ["state"],
            registry=self.registry,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 86400),
        )
        self.reconcile_seconds = Histogram(
            names.CONTROLLER_RECONCILE_SECONDS,
            "Time to reconcile one rollout once",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.dependency_errors = Counter(
            names.CONTROLLER_DEPENDENCY_ERRORS,
            "Controller calls that failed because an outside dependency did (retried next tick)",
            ["dependency"],
            registry=self.registry,
        )
        self.registry.register(_RolloutsByPhase(store))
        self.registry.register(_ActiveRollouts(store, max_duration_s or (lambda _policy: None)))
        self.registry.register(_WaitingOnDependency(store))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_json_logging(level: str = "INFO") -> None:
    """Every logger of the process (controller, workflow runner, gitops, libraries) as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


log = logging.getLogger("canaryflow.controller")


def event(msg: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line: a message plus fields (rollout, model, state, reason...)."""
    log.log(level, msg, extra={"fields": {"at": time.time(), **fields}})
