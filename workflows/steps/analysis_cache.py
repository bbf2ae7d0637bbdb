"""What the live analysis steps keep between ticks: each step's looks read and judged so far, and the
moment its canary first served, so a tick reads and judges only its new looks.

A cache, nothing more: a process that starts without it (a restarted controller, an Argo analysis
pod) reads every look back from Prometheus' history on its first tick and judges them at once, as
before, and decides the same (`canaryflow.kernel.analysis.incremental`). Keyed by rollout, step and
window: a step run again over another window, or another rollout, never sees another's state.
Bounded: the least recently used steps go first, and a decided step is dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from typing import Any

from canaryflow.kernel.analysis.incremental import StepAnalysis

MAX_STEPS = 4096  # steps kept at once: every rollout in analysis, with room
LATENESS_KEPT = 100_000  # the latest looks' lateness, for whoever watches the cadence (bench/controller.py)


class AnalysisCache:
    """Per-step analysis states and first-request moments, shared by the threads running steps."""

    def __init__(self, max_steps: int = MAX_STEPS) -> None:
        self._max = max_steps
        self._lock = threading.Lock()
        self._states: OrderedDict[Hashable, StepAnalysis] = OrderedDict()
        self._forecasts: dict[Hashable, dict[str, Any] | None] = {}  # beside each state: its step's forecast
        self._first: OrderedDict[Hashable, float] = OrderedDict()
        self._lateness: deque[tuple[str, float, float]] = deque(maxlen=LATENESS_KEPT)

    def state(self, key: Hashable) -> StepAnalysis | None:
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                self._states.move_to_end(key)
            return state

    def keep(self, key: Hashable, state: StepAnalysis) -> None:
        """Remember `state` for the step's next tick; a decided step is forgotten (it has ended)."""
        with self._lock:
            if state.decided:
                self._states.pop(key, None)
                self._forecasts.pop(key, None)
                return
            self._states[key] = state
            self._states.move_to_end(key)
            while len(self._states) > self._max:
                gone, _ = self._states.popitem(last=False)
                self._forecasts.pop(gone, None)

    def forecast(self, key: Hashable) -> dict[str, Any] | None:
        with self._lock:
            return self._forecasts.get(key)

    def keep_forecast(self, key: Hashable, forecast: dict[str, Any] | None) -> None:
        with self._lock:
            if key in self._states:
                self._forecasts[key] = forecast

    def first_request(self, key: Hashable) -> float | None:
        with self._lock:
            return self._first.get(key)

    def keep_first_request(self, key: Hashable, at: float) -> None:
        """The canary's first served look never moves once found (Prometheus' history stands)."""
        with self._lock:
            self._first[key] = at
            while len(self._first) > self._max:
                self._first.popitem(last=False)

    def judged(self, model: str, look_times: Sequence[float], at: float) -> None:
        """`model`'s looks (their unix times) judged at `at`: how late each was judged, against the
        policy's cadence (a look is due at its own time; Prometheus' is read once it is a second old)."""
        with self._lock:
            self._lateness.extend((model, at, at - t) for t in look_times)

    def lateness(self, since: float = 0.0, models: frozenset[str] | None = None) -> list[float]:
        """Seconds between each look's time and its judging, for the looks judged after `since` (of
        `models` only, where given)."""
        with self._lock:
            return [
                late
                for model, at, late in self._lateness
                if at >= since and (models is None or model in models)
            ]

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)
