"""Batched reads: one range query per metric family per tick for every rollout in analysis.

`PrometheusSource` reads each step's looks with its own range queries (ten per rollout and look).
`BatchedSource` wraps it for the controller's local runner, where every rollout's analysis runs in
one process. A step asking for its looks (`observe_looks`) registers what it needs (model, versions,
its window on the look grid); a reader thread, at each look once it is `settle_s` old, plans one
range query per metric family (`prometheus.FAMILIES`) for all of them, on the shared grid
(`canaryflow.kernel.contracts.looks`: `step` = the cadence, start and end on its multiples),
grouped `by (model, version, ...)` and selected with `model=~"a|b|c"`, `version=~"..."`; the
answers are sliced back per step. The step itself never waits: it takes the looks read so far
(none yet is not a decision: it is judged on a later tick) and is never blocked by Prometheus.

- Equal to the per-rollout reads: the same families, summed (or maxed) by the same labels plus
  `model`, `version` (and `baseline`): sums of integer counters are exact in any order.
  `tests/analysis/test_batched_reads.py` compares both on a real Prometheus.
- Steps whose next look is within MERGE_LOOKS of each other share a query (its start the earliest);
  one further behind (a new step with history, a restarted controller) gets its own, off the
  steps' threads too. A group's models are split into chunks of at most `max_selector_chars` of
  regex, so no URL outgrows what a server accepts.
- Isolation: each chunk's queries run on a small pool; a chunk's looks are published when all its
  families have answered. A slow query holds only its chunk's steps back; a failing one too, and
  they read the error (`MetricsError`) while they have no look left, so the step waits and says why
  as it does with per-rollout reads. A chunk still in flight is not asked again.
- Where a chunk is read (`ChunkReader`): `query_chunk` on this source's threads, or in a reader
  process of its own (`read_process.ProcessReads`, the controller's default: its answers' parsing
  then leaves the controller's interpreter); the same function, so the same readings.
- Only what is batched is batched: a policy that reads metric providers (templates), a cadence off
  the millisecond grid or a window not on it, and every other call (`observe`, `first_request_at`,
  `scraped`) go to the wrapped source as before, on the caller's thread.
- Memory: per step, the looks read and not yet taken and its look 0 (two `VersionReading`s each); a
  step not asked for `idle_s` is forgotten (a decided or ended one), and read again if it returns.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from canaryflow.adapters.metrics import MetricsError
from canaryflow.adapters.metrics.prometheus import FAMILIES, PrometheusSource
from canaryflow.adapters.metrics.readings import VersionReading, observations_between
from canaryflow.kernel.analysis.observations import Observations
from canaryflow.kernel.contracts.looks import grid_ms
from policies.model import Policy

log = logging.getLogger(__name__)

MAX_SELECTOR_CHARS = 16_000  # regex of model names per query (URL-encoded, well under a server's 1 MiB)
MERGE_LOOKS = 12  # steps whose next look is this close share one query (a few looks read twice)
IDLE_S = 300.0  # a step not asked for this long is forgotten (a slow tick must not make it read again)
WORKERS = 4  # queries in flight at once: a slow chunk holds one
_RX_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def _string(value: str) -> str:
    """A PromQL double-quoted string's content."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _alternation(values: Iterable[str]) -> str:
    """A fully anchored RE2 alternation matching exactly `values` (metacharacters escaped), as the
    content of a PromQL string."""
    return _string("|".join("".join(f"\\{c}" if c in _RX_SPECIAL else c for c in v) for v in values))


@dataclass(eq=False)
class _Want:
    """One step's reads: its arms, its window on the grid, and the looks read for it so far."""

    model: str
    baseline: str
    canary: str
    since_ms: int
    every_ms: int
    touched: float
    readings: dict[int, tuple[VersionReading, VersionReading]] = field(default_factory=dict)
    fetched: int = -1  # looks 0 … fetched read (those before `wanted` dropped, but look 0)
    wanted: int = 1  # the first look the step has not taken yet
    busy: bool = False  # a query for it is in flight
    error: str | None = None  # the latest read's failure, until a read succeeds
    retry_at: float = 0.0

    def need(self) -> int:
        """The first look to read."""
        return 0 if 0 not in self.readings else self.fetched + 1

    def at_ms(self, look: int) -> int:
        return self.since_ms + look * self.every_ms


@dataclass(frozen=True)
class _Job:
    """One chunk's queries: every family over the grid times `first_ms` … `last_ms`."""

    every_ms: int
    first_ms: int
    last_ms: int
    wants: tuple[_Want, ...]
    planned: tuple[int, ...]  # each want's first look needed when planned


class BatchedSource:
    """`MetricsSource` whose live looks are read for all steps at once, off the steps' threads."""

    def __init__(
        self,
        inner: PrometheusSource,
        *,
        max_selector_chars: int = MAX_SELECTOR_CHARS,
        idle_s: float = IDLE_S,
        workers: int = WORKERS,
        clock: Callable[[], float] = time.time,
        reader: bool = True,
        chunk_reader: ChunkReader | None = None,
    ) -> None:
        """`reader=False`: no thread; whoever drives it calls `refresh` (tests, a tool).
        `chunk_reader`: where a chunk is asked and parsed (default: `query_chunk` on `inner`, on
        the reader's threads)."""
        self.inner = inner
        self._chunk_reader: ChunkReader = chunk_reader or functools.partial(query_chunk, inner)
        self.settle_s = inner.settle_s
        self._max_chars = max_selector_chars
        self._idle_s = idle_s
        self._workers = workers
        self._clock = clock
        self._lock = threading.Lock()
        self._wants: dict[tuple[str, str, str, int, int], _Want] = {}
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader = reader
        self._pool: ThreadPoolExecutor | None = None

    # --- the MetricsSource port: the live looks from the batch, everything else as before -------

    def observe_looks(
        self,
        model: str,
        baseline_version: str,
        canary_version: str,
        since: float,
        every_s: float,
        *,
        policy: Policy | None = None,
        from_look: int = 1,
    ) -> list[Observations]:
        """The step's looks from `from_look` read so far (oldest first; none until the reader has
        read them: the step is judged on a later call). Raises `MetricsError` when it has none and
        the latest read for it failed."""
        every = grid_ms(every_s)
        since_ms = round(since * 1000)
        if (policy is not None and policy.reads_own_series) or every is None or since_ms % every:
            return self.inner.observe_looks(
                model, baseline_version, canary_version, since, every_s, policy=policy, from_look=from_look
            )
        key = (model, baseline_version, canary_version, since_ms, every)
        first = max(from_look, 1)
        with self._lock:
            want = self._wants.get(key)
            if want is None:
                arms = (model, baseline_version, canary_version)
                self._wants[key] = _Want(*arms, since_ms, every, self._clock(), wanted=first)
                self._start()
                self._wake.set()
                return []
            want.touched = self._clock()
            if first < want.wanted:  # a step judged afresh (its kept state was dropped): read again
                want.fetched = min(want.fetched, first - 1)
            want.wanted = first
            for look in [k for k in want.readings if 0 < k < first]:
                del want.readings[look]
            if 0 not in want.readings or want.fetched < first:
                if want.error is not None:
                    raise MetricsError(want.error)
                return []
            start = want.readings[0]
            taken = []
            for k in range(first, want.fetched + 1):
                if (pair := want.readings.get(k)) is None:
                    break
                taken.append((k, pair))
        return [observations_between(k * every_s, (start[0], b), (start[1], c)) for k, (b, c) in taken]

    def observe(
        self,
        model: str,
        baseline_version: str,
        canary_version: str,
        since: float,
        *,
        policy: Policy | None = None,
    ) -> Observations:
        return self.inner.observe(model, baseline_version, canary_version, since, policy=policy)

    def first_request_at(
        self, model: str, version: str, since: float, every_s: float, *, policy: Policy | None = None
    ) -> float | None:
        return self.inner.first_request_at(model, version, since, every_s, policy=policy)

    def scraped(self, model: str, version: str) -> bool | None:
        return self.inner.scraped(model, version)

    # --- the reader ---------------------------------------------------------------------------

    def _start(self) -> None:
        """Starts the reader on the first step (under the lock); never after `close`."""
        if self._reader and self._thread is None and not self._closed.is_set():
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="canaryflow-metrics")
            self._thread = threading.Thread(target=self._run, name="canaryflow-metrics-reader", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stops the reader; a query in flight ends by its timeout, its answer is dropped."""
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if (close := getattr(self._chunk_reader, "close", None)) is not None:
            close()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                jobs, wait_s = self.plan()
            except Exception:  # the reader must go on; the steps see no new looks meanwhile
                log.exception("batched metrics reads: planning failed")
                jobs, wait_s = [], 1.0
            for job in jobs:
                try:
                    assert self._pool is not None
                    self._pool.submit(self.read, job)
                except RuntimeError:  # the interpreter or the pool is shutting down
                    self._release(job, "the metrics reader is stopping")
                    return
            self._wake.wait(wait_s)
            self._wake.clear()

    def refresh(self) -> None:
        """One round of the reader on the caller's thread: every query due now, read and published."""
        jobs, _ = self.plan()
        for job in jobs:
            self.read(job)

    def _latest_ms(self, every_ms: int, now: float) -> int:
        """The latest grid time at least `settle_s` old."""
        return round((now - self.settle_s) * 1000) // every_ms * every_ms

    def plan(self) -> tuple[list[_Job], float]:
        """The queries due now (their steps marked in flight) and how long to sleep until the next
        look settles. Steps forgotten after `idle_s` unasked go first."""
        now = self._clock()
        jobs: list[_Job] = []
        wake_at = now + 1.0
        with self._lock:
            for key, want in list(self._wants.items()):
                if not want.busy and now - want.touched > self._idle_s:
                    del self._wants[key]
            by_cadence: dict[int, list[_Want]] = {}
            for want in self._wants.values():
                latest = self._latest_ms(want.every_ms, now)
                wake_at = min(wake_at, (latest + want.every_ms) / 1000 + self.settle_s)
                if want.error is not None and want.retry_at > now:
                    wake_at = min(wake_at, want.retry_at)
                elif not want.busy and want.at_ms(want.need()) <= latest:
                    by_cadence.setdefault(want.every_ms, []).append(want)
            for every_ms, wants in by_cadence.items():
                latest = self._latest_ms(every_ms, now)
                for group in _groups(wants, every_ms):
                    first_ms = group[0].at_ms(group[0].need())
                    for chunk in self._chunks(group):
                        planned = tuple(w.need() for w in chunk)
                        for want in chunk:
                            want.busy = True
                        jobs.append(_Job(every_ms, first_ms, latest, tuple(chunk), planned))
        return jobs, max(0.01, wake_at - now)

    def _chunks(self, wants: list[_Want]) -> Iterable[list[_Want]]:
        """`wants` split by model into chunks of at most `max_selector_chars` of model regex (one
        model at least)."""
        by_model: dict[str, list[_Want]] = {}
        for want in wants:
            by_model.setdefault(want.model, []).append(want)
        chunk: list[_Want] = []
        chars = 0
        for model, of_model in sorted(by_model.items()):
            size = len(_alternation([model])) + 1
            if chunk and chars + size > self._max_chars:
                yield chunk
                chunk, chars = [], 0
            chunk.extend(of_model)
            chars += size
        if chunk:
            yield chunk

    def read(self, job: _Job) -> None:
        """One chunk's families over its grid times, sliced back per step and published together;
        on a failure none is, and its steps read the error."""
        arms = tuple((w.model, w.baseline, w.canary, w.since_ms) for w in job.wants)
        try:
            readings = self._chunk_reader(job.every_ms, job.first_ms, job.last_ms, arms)
        except Exception as exc:  # MetricsError, or an answer this cannot read: the chunk waits
            log.info("batched metrics read failed for %d steps: %s", len(job.wants), exc)
            self._release(job, str(exc) if isinstance(exc, MetricsError) else f"metrics read failed: {exc!r}")
            return
        with self._lock:
            for want, planned, read in zip(job.wants, job.planned, readings, strict=True):
                want.busy, want.error = False, None
                for look, pair in read.items():
                    if look == 0 or look >= want.wanted:
                        want.readings[look] = pair
                if planned <= want.fetched + 1 and 0 in want.readings:  # contiguous with what it has
                    want.fetched = max(want.fetched, (job.last_ms - want.since_ms) // want.every_ms)
        self._wake.set()  # a chunk that answered late may have missed a look meanwhile: plan again

    def _release(self, job: _Job, error: str) -> None:
        """The chunk's steps after a failed read: the error, and a retry at the next look."""
        with self._lock:
            for want in job.wants:
                want.busy, want.error = False, error
                want.retry_at = (job.last_ms + job.every_ms) / 1000 + self.settle_s


# One step's arms and window start on the grid, as a chunk's read gets it: (model, baseline, canary,
# since_ms). Plain values, so a chunk can be read in another process (`read_process.py`).
Arms = tuple[str, str, str, int]
# Each step's readings (by look) in a chunk's range, in the order of its `Arms`.
ChunkReadings = list[dict[int, tuple[VersionReading, VersionReading]]]


class ChunkReader(Protocol):
    """Reads one chunk: every family once over the grid times `first_ms` … `last_ms` (step
    `every_ms`) for the steps `arms`. `query_chunk` on the reader's own threads, or in a process of
    its own (`read_process.ProcessReads`): the same function, the same readings."""

    def __call__(
        self, every_ms: int, first_ms: int, last_ms: int, arms: tuple[Arms, ...]
    ) -> ChunkReadings: ...


def query_chunk(
    source: PrometheusSource, every_ms: int, first_ms: int, last_ms: int, arms: tuple[Arms, ...]
) -> ChunkReadings:
    """Each family once for the chunk; each step's readings at its looks in the range."""
    models = sorted({a[0] for a in arms})
    versions = sorted({v for a in arms for v in (a[1], a[2])})
    canaries = sorted({a[2] for a in arms})
    baselines = sorted({a[1] for a in arms})
    arm = f'model=~"{_alternation(models)}",version=~"{_alternation(versions)}"'
    shadow = f'model=~"{_alternation(models)}",version=~"{_alternation(canaries)}",'
    shadow += f'baseline=~"{_alternation(baselines)}"'
    every_s = every_ms / 1000
    points = (last_ms - first_ms) // every_ms
    # (family, model, version, baseline or "") -> grid index -> {label value: value}
    answers: dict[tuple[int, str, str, str], dict[int, dict[str, float]]] = {}
    for i, family in enumerate(FAMILIES):
        by = ("model", "version", "baseline") if family.shadow else ("model", "version")
        promql = family.promql(shadow if family.shadow else arm, by)
        for metric, values in source.range_series(promql, first_ms / 1000, every_s, points):
            series = (i, metric.get("model", ""), metric.get("version", ""), metric.get("baseline", ""))
            label = metric.get(family.label, "") if family.label else ""
            at = answers.setdefault(series, {})
            for point, value in values.items():
                at.setdefault(point, {})[label] = value
    out: ChunkReadings = []
    for model, baseline, canary, since_ms in arms:
        offset = (first_ms - since_ms) // every_ms  # the step's look at grid index 0
        mine: dict[int, tuple[VersionReading, VersionReading]] = {}
        for point in range(max(0, -offset), points + 1):
            mine[point + offset] = (
                _reading(answers, point, model, baseline, None),
                _reading(answers, point, model, canary, baseline),
            )
        out.append(mine)
    return out


def _reading(
    answers: dict[tuple[int, str, str, str], dict[int, dict[str, float]]],
    point: int,
    model: str,
    version: str,
    shadow_of: str | None,
) -> VersionReading:
    """One arm's counters at one grid point, from the chunk's answers (as `PrometheusSource.read`)."""
    reading = VersionReading()
    for i, family in enumerate(FAMILIES):
        if family.shadow and shadow_of is None:
            continue
        series = (i, model, version, shadow_of if family.shadow and shadow_of is not None else "")
        for label, value in answers.get(series, {}).get(point, {}).items():
            family.put(reading, label, value)
    return reading


def _groups(wants: list[_Want], every_ms: int) -> Iterable[list[_Want]]:
    """`wants` by the grid time of their next look, those within MERGE_LOOKS of a group's first
    together (the group's query starts at that first)."""
    ordered = sorted(wants, key=lambda w: w.at_ms(w.need()))
    group: list[_Want] = []
    for want in ordered:
        if group and want.at_ms(want.need()) > group[0].at_ms(group[0].need()) + MERGE_LOOKS * every_ms:
            yield group
            group = []
        group.append(want)
    if group:
        yield group
