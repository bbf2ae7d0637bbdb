"""The drift monitor: watches every champion's traffic, as the prediction log records it, against a
reference window captured when the version became champion, or one the user chose: a span of the log
set through `PUT /models/{name}/drift/reference` (kept across restarts, `controller.drift_reference`),
else a reference file named in the settings.

Each tick reads what the servers appended since the last one (`PredictionLogReader.follow`), keeps the
champion's records of the last `window_s`, and every `cadence_s` judges that window with the kernel's
statistics (`canaryflow.kernel.drift_statistics`), whose thresholds hold the policy's monthly
false-alarm budget.
A change of state (drift found, drift gone) is an event for the listeners (notifications, webhooks)
and, with a registry, a model-version tag; the latest verdict is in `GET /models/{name}/drift` and on
`/metrics` as `canaryflow_drift_*`. It rolls back only where the policy opts in (`on_drift: rollback`):
then a detection goes to the responder (`controller.drift_action`) before the listeners hear of it, and
the event says what it did or why it could not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from canaryflow.kernel.contracts import metrics as names
from canaryflow.kernel.contracts.drift import (
    DRIFT_TAG,
    EVENT_DRIFT_CLEARED,
    EVENT_DRIFT_DETECTED,
    DriftEvent,
    DriftVerdict,
    PredictionRecord,
)
from canaryflow.kernel.contracts.phases import RolloutPhase
from canaryflow.kernel.drift_statistics import DriftInputError, Reference, Window, calibrate, evaluate
from canaryflow.kernel.ports import PredictionLogReader, Registry
from controller.drift_action import DriftResponder
from controller.drift_reference import (
    ReferenceRequest,
    ReferenceShelf,
    SavedReference,
    api_source,
    read_span,
)
from controller.observability import event
from controller.rollout.store import RolloutStore
from policies.drift_policy import DriftPolicy

Champions = Callable[[], dict[str, tuple[str, float]]]  # model -> (champion version, champion since)
DriftListener = Callable[[DriftEvent], None]


@dataclass(frozen=True, slots=True)
class _Row:
    """A record as the window keeps it: the embedding as float32 (1.5 kB for 384 values, where the
    parsed list of Python floats takes about 12 kB)."""

    t: float
    tokens: int
    latency_ms: float
    embedding: np.ndarray

    @classmethod
    def of(cls, r: PredictionRecord) -> _Row:
        return cls(r.t, r.tokens, r.latency_ms, np.asarray(r.embedding, dtype=np.float32))


def _window(rows: list[_Row]) -> Window:
    if not rows:
        return Window(np.zeros((0, 0)), np.zeros(0), np.zeros(0))
    dims = {row.embedding.shape[0] for row in rows}
    if len(dims) > 1:
        raise DriftInputError(f"embedding: records of one window have different sizes {sorted(dims)}")
    return Window(
        np.stack([row.embedding for row in rows]).astype(float),
        np.asarray([row.tokens for row in rows], dtype=float),
        np.asarray([row.latency_ms for row in rows], dtype=float),
    )


@dataclass
class _Watch:
    model: str
    version: str
    since: float
    reference: Reference | None = None
    reference_note: str = "collecting"
    reference_span: tuple[float, float] | None = None
    reference_source: str = ""
    recent: deque[_Row] = field(default_factory=deque)
    verdict: DriftVerdict | None = None
    evaluated_at: float | None = None
    next_look: float = 0.0
    drifting: bool = False
    evaluations: dict[str, int] = field(default_factory=lambda: {"drift": 0, "no_drift": 0, "no_data": 0})


class ChampionSource:
    """The champion of each model: the latest promoted rollout in the store, or (for `models` the
    controller never rolled out) the version holding the champion alias in the registry, watched from
    the moment the monitor first saw it there."""

    def __init__(
        self,
        store: RolloutStore,
        registry: Registry | None,
        models: list[str],
        alias: str,
        clock: Callable[[], float] = time.time,
        rolled_back: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        self.store, self.registry, self.models, self.alias, self.clock = store, registry, models, alias, clock
        self.rolled_back = rolled_back  # promoting rollout id -> when drift rolled it back
        self._first_seen: dict[tuple[str, str], float] = {}

    def __call__(self) -> dict[str, tuple[str, float]]:
        found: dict[str, tuple[str, float]] = {}
        undone = self.rolled_back() if self.rolled_back is not None else {}
        for record in self.store.rollouts():
            if record.phase == RolloutPhase.PROMOTED:
                # A promotion drift rolled back made its baseline champion again, from that moment.
                champion, since = record.canary_version, record.finished_at or record.updated_at
                if record.id in undone:
                    champion, since = record.baseline_version, undone[record.id]
                if record.model not in found or since >= found[record.model][1]:
                    found[record.model] = (champion, since)
        if self.registry is not None:
            for model in self.models:
                try:
                    version = self.registry.version_for_alias(model, self.alias)
                except Exception as exc:  # the registry being away must not stop the monitor
                    event("drift: registry not reachable", logging.WARNING, model=model, error=repr(exc))
                    continue
                if version is not None and found.get(model, ("", 0.0))[0] != version:
                    since = self._first_seen.setdefault((model, version), self.clock())
                    found[model] = (version, since)
        return found


class DriftMonitor:
    def __init__(
        self,
        policy: DriftPolicy,
        reader: PredictionLogReader,
        champions: Champions,
        *,
        registry: Registry | None = None,
        reference_files: dict[str, Path] | None = None,
        read_reference_file: Callable[[Path], list[PredictionRecord]] | None = None,
        shelf: ReferenceShelf | None = None,
        clock: Callable[[], float] = time.time,
        responder: DriftResponder | None = None,
    ) -> None:
        self.policy, self.reader, self.champions, self.registry = policy, reader, champions, registry
        # Consulted only under `on_drift: rollback`; without one such a policy only reports.
        self.responder = responder if policy.on_drift == "rollback" else None
        self.reference_files = reference_files or {}
        self._read_file = read_reference_file
        self.shelf = shelf
        self.clock = clock
        self.listeners: list[DriftListener] = []
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self._referencing = threading.Lock()  # the loop's capture against a reference set by the API

    # -- the loop ------------------------------------------------------------------------------------

    def tick(self) -> None:
        if self.responder is not None:
            self.responder.resume()  # a rollback decided before (a failure, a restart) lands first
        now = self.clock()
        for model, (version, since) in self.champions().items():
            watch = self._watches.get(model)
            if watch is None or watch.version != version:
                watch = _Watch(model, version, since)
                with self._lock:
                    self._watches[model] = watch
                event("drift: watching champion", model=model, version=version, since=since)
            fresh = self.reader.follow(model, max(since, now - self.policy.window_s))
            new = [_Row.of(r) for r in fresh if r.version == version and r.t >= since]
            if watch.reference is None:  # the reference is read back as a range once it is complete
                with self._referencing:
                    if watch.reference is None:  # not set through the API meanwhile
                        self._try_reference(watch, now)
            if watch.reference is None:
                continue
            watch.recent.extend(sorted(new, key=lambda r: r.t))
            horizon = now - self.policy.window_s
            while watch.recent and watch.recent[0].t < horizon:
                watch.recent.popleft()
            if now >= watch.next_look:
                self._look(watch, now)

    def run(
        self, stop: threading.Event, interval_s: float, active: Callable[[], bool] = lambda: True
    ) -> None:
        """Ticks until `stop`, while `active` (with replicas: while this one leads)."""
        while not stop.is_set():
            try:
                if active():
                    self.tick()
            except Exception as exc:  # one bad tick must not end the loop
                event("drift tick failed", logging.ERROR, error=repr(exc))
            stop.wait(interval_s)

    def _try_reference(self, watch: _Watch, now: float) -> None:
        policy = self.policy
        path = self.reference_files.get(watch.model)
        saved = self.shelf.load(watch.model, watch.version) if self.shelf is not None else None
        if saved is not None:  # set through the API for this champion: it wins over the settings' file
            self._adopt(watch, saved, now)
            return
        if path is not None and self._read_file is not None:
            try:
                records, source = self._read_file(path), str(path)
            except ValueError as exc:  # a bad reference file: said in the status, tried again later
                watch.reference_note = str(exc)
                return
            end = now
        else:
            end = watch.since + policy.reference_window_s
            if now < end:
                watch.reference_note = f"collecting until {end:.0f}"
                return
            records = self.reader.read(
                watch.model, watch.since, now, version=watch.version, limit=policy.reference_max_samples
            )
            end = max(end, max((r.t for r in records), default=end))
            source = "prediction log"
        try:
            reference = calibrate(policy, Window.from_records(records))
        except DriftInputError as exc:
            watch.reference_note = str(exc)
            return
        self._install(watch, reference, (watch.since, end), source, now)

    def _install(
        self, watch: _Watch, reference: Reference, span: tuple[float, float], source: str, now: float
    ) -> None:
        with self._lock:
            watch.reference = reference
            watch.reference_span = span
            watch.reference_source = source
            watch.reference_note = f"ready ({reference.size} records from the {source})"
            watch.next_look = now + self.policy.cadence_s
        event("drift: reference ready", model=watch.model, version=watch.version, samples=reference.size,
              source=source)  # fmt: skip

    def _adopt(self, watch: _Watch, saved: SavedReference, now: float) -> None:
        """A reference set through the API (saved for this champion): recalibrated from its records."""
        try:
            reference = calibrate(self.policy, Window.from_records(saved.records))
        except DriftInputError as exc:
            watch.reference_note = f"saved reference not usable: {exc}"
            return
        self._install(watch, reference, (saved.since, saved.until), api_source(saved), now)

    def set_reference(self, model: str, request: ReferenceRequest) -> dict[str, Any]:
        """Replace the champion's reference by a span of the prediction log; the new status.

        Raises LookupError (no watched champion) or ValueError naming the field (a span in the
        future, too few records for the policy); nothing changes then."""
        now = self.clock()
        with self._lock:
            watch = self._watches.get(model)
        if watch is None:
            watched = ", ".join(self.models()) or "none yet"
            raise LookupError(f"model {model!r} has no watched champion ({watched})")
        saved = read_span(self.reader, self.policy.reference_max_samples, watch.version, model, request, now)
        try:
            reference = calibrate(self.policy, Window.from_records(saved.records))
        except DriftInputError as exc:
            raise ValueError(f"since/until: version {saved.version} in this span: {exc}") from exc
        with self._referencing:  # not interleaved with the loop capturing or loading one
            if self.shelf is not None:  # saved first: an answered request survives a restart
                self.shelf.save(saved)
            self._install(watch, reference, (saved.since, saved.until), api_source(saved), now)
        status = self.status(model)
        assert status is not None
        return status

    def _look(self, watch: _Watch, now: float) -> None:
        assert watch.reference is not None
        try:
            verdict = evaluate(watch.reference, _window(list(watch.recent)))
        except DriftInputError as exc:
            event("drift: window not judged", logging.WARNING, model=watch.model, error=str(exc))
            watch.next_look = now + self.policy.cadence_s
            return
        judged = any(c.statistic is not None for c in verdict.checks)
        outcome = "no_data" if not judged else "drift" if verdict.drift else "no_drift"
        with self._lock:
            watch.verdict, watch.evaluated_at = verdict, now
            watch.evaluations[outcome] += 1
            watch.next_look = now + self.policy.cadence_s
            changed = judged and verdict.drift != watch.drifting
            if changed:
                watch.drifting = verdict.drift
        if changed:
            self._announce(watch, verdict, now)

    def _announce(self, watch: _Watch, verdict: DriftVerdict, now: float) -> None:
        kind = EVENT_DRIFT_DETECTED if verdict.drift else EVENT_DRIFT_CLEARED
        fired = [c.name for c in verdict.checks if c.drift]
        event(f"drift: {kind}", logging.WARNING if verdict.drift else logging.INFO, model=watch.model,
              version=watch.version, checks=fired)  # fmt: skip
        action = ""
        if verdict.drift and self.responder is not None:
            try:
                action = self.responder.respond(watch.model, watch.version, verdict)
            except Exception as exc:  # the store away: said in the event; monitoring goes on
                action = f"not rolled back: {exc!r}"
                event("drift: response failed", logging.ERROR, model=watch.model, error=repr(exc))
        message = DriftEvent(
            type=kind, model=watch.model, version=watch.version, at=now, verdict=verdict, action=action
        )
        for listener in list(self.listeners):
            try:
                listener(message)
            except Exception as exc:  # a failing receiver must not stop monitoring
                event("drift: listener failed", logging.ERROR, error=repr(exc))
        if self.registry is not None:
            try:
                value = "true" if verdict.drift else "false"
                self.registry.set_version_tag(watch.model, watch.version, DRIFT_TAG, value)
            except Exception as exc:
                event("drift: registry tag not set", logging.WARNING, error=repr(exc))

    # -- reading the state ---------------------------------------------------------------------------

    def models(self) -> list[str]:
        with self._lock:
            return sorted(self._watches)

    def status(self, model: str) -> dict[str, Any] | None:
        """The API's view of one model (None when it has no watched champion)."""
        with self._lock:
            watch = self._watches.get(model)
            if watch is None:
                return None
            policy = self.policy
            return {
                "model": watch.model,
                "version": watch.version,
                "champion_since": watch.since,
                "drift": watch.drifting,
                "policy": {
                    "name": policy.name,
                    "window_s": policy.window_s,
                    "cadence_s": policy.cadence_s,
                    "false_alarms_per_month": policy.false_alarms_per_month,
                    "alpha_per_check": policy.alpha_per_check,
                    "on_drift": policy.on_drift,
                },
                "reference": {
                    "state": "ready" if watch.reference is not None else "collecting",
                    "note": watch.reference_note,
                    "samples": watch.reference.size if watch.reference is not None else 0,
                    "span": list(watch.reference_span) if watch.reference_span else None,
                    "source": watch.reference_source or None,
                },
                "window_samples": len(watch.recent),
                "evaluated_at": watch.evaluated_at,
                "evaluations": dict(watch.evaluations),
                "verdict": watch.verdict.model_dump(mode="json") if watch.verdict else None,
                "action": self._last_action(model),
            }

    def _last_action(self, model: str) -> dict[str, Any] | None:
        """The latest response to a detection of this model (any version), as the API shows it."""
        if self.responder is None:
            return None
        action = self.responder.actions.latest(model)
        return action.model_dump(mode="json") if action else None

    def snapshot(self) -> list[_Watch]:
        with self._lock:
            return list(self._watches.values())


class DriftCollector(Collector):
    """`canaryflow_drift_*` read from the monitor at scrape time (labels model, version; check)."""

    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Any:
        mv = [names.MODEL_LABEL, names.VERSION_LABEL]
        detected = GaugeMetricFamily(names.DRIFT_DETECTED, "1 while the champion drifts", labels=mv)
        statistic = GaugeMetricFamily(
            names.DRIFT_STATISTIC, "Latest statistic of each drift check", labels=[*mv, names.CHECK_LABEL]
        )
        threshold = GaugeMetricFamily(
            names.DRIFT_THRESHOLD,
            "Threshold of each drift check (drift above it)",
            labels=[*mv, names.CHECK_LABEL],
        )
        samples = GaugeMetricFamily(names.DRIFT_WINDOW_SAMPLES, "Records in the recent window", labels=mv)
        looks = CounterMetricFamily(
            names.DRIFT_EVALUATIONS, "Windows judged, by outcome", labels=[*mv, names.OUTCOME_LABEL]
        )
        for watch in self.monitor.snapshot():
            labels = [watch.model, watch.version]
            detected.add_metric(labels, 1.0 if watch.drifting else 0.0)
            samples.add_metric(labels, len(watch.recent))
            for outcome, count in watch.evaluations.items():
                looks.add_metric([*labels, outcome], count)
            for check in watch.verdict.checks if watch.verdict else []:
                if check.statistic is not None and check.threshold is not None:
                    statistic.add_metric([*labels, check.name], check.statistic)
                    threshold.add_metric([*labels, check.name], check.threshold)
        yield from (detected, statistic, threshold, samples, looks)
