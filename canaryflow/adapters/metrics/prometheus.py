"""Observations from a Prometheus server (PromQL through prometheus-api-client).

Counters are read at the step start and now (instant queries with `time=`), or at every look since
the step start (range queries whose points fall on the looks), by `model`/`version` label, and
subtracted: exact integer counts per bucket, unlike `increase()`, which extrapolates. A range query
evaluates the same expression at each point as an instant query at that time would, so both ways
read the same counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import requests
from prometheus_api_client import PrometheusConnect

from canaryflow.adapters.metrics import MetricsError
from canaryflow.adapters.metrics.providers import (
    ArmReading,
    observations_of,
    policy_queries,
    put_answer,
    requests_query,
    settle,
)
from canaryflow.adapters.metrics.readings import (
    GPU_MEMORY_METRIC,
    LATENCY_METRIC,
    REQUESTS_METRIC,
    SHADOW_METRIC,
    VersionReading,
    observations_between,
)
from canaryflow.kernel.analysis.observations import Observations
from canaryflow.kernel.contracts.providers import ARM_MODEL_LABEL, ARM_VERSION_LABEL
from policies.model import Policy

# A look is read once it is this old: a scrape is stamped with its start time but stored when it
# ends, so a look read sooner might miss a scrape stamped before it, which a restarted step would see.
SETTLE_S = 1.0
# Points per range query: Prometheus refuses more than 11,000; longer grids take several queries.
MAX_POINTS = 10_000
# Steps whose counters at their start (look 0) are remembered: every step in analysis at once, and more.
KEEP_STARTS = 4096

# Where one query's sample goes in a reading: (reading, the query's label value or "", value).
Setter = Callable[[VersionReading, str, float], None]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _latency_bucket(reading: VersionReading, le: str, value: float) -> None:
    if le:  # "+Inf" included, as float("inf"): the histogram keeps the finite bounds
        reading.latency_buckets[float(le)] = value


def _latency_count(reading: VersionReading, _: str, value: float) -> None:
    reading.latency_count = value


def _requests(reading: VersionReading, code: str, value: float) -> None:
    reading.requests_by_code[code] = value


def _gpu_memory(reading: VersionReading, _: str, value: float) -> None:
    reading.gpu_memory_bytes = value


def _shadow_bucket(reading: VersionReading, le: str, value: float) -> None:
    if le:
        reading.shadow_buckets[float(le)] = value


def _shadow_count(reading: VersionReading, _: str, value: float) -> None:
    reading.shadow_count = value


@dataclass(frozen=True)
class Family:
    """One metric family a `VersionReading` is made of: the series, how its replicas are combined
    (`sum`, `max`), the label its answer is split by (or None), and where each value goes. A
    per-rollout query and a batched one (`batched.py`, grouped by model and version too) both render
    from here, so they read the same numbers."""

    metric: str
    aggregate: str
    label: str | None
    put: Setter
    shadow: bool = False  # the canary's shadow comparison: selected by its `baseline` label too

    def promql(self, selector: str, by: tuple[str, ...] = ()) -> str:
        labels = (*by, self.label) if self.label else by
        grouped = f" by ({', '.join(labels)}) " if labels else ""
        return f"{self.aggregate}{grouped}({self.metric}{{{selector}}})"


FAMILIES = (
    Family(f"{LATENCY_METRIC}_bucket", "sum", "le", _latency_bucket),
    Family(f"{LATENCY_METRIC}_count", "sum", None, _latency_count),
    Family(REQUESTS_METRIC, "sum", "code", _requests),
    Family(GPU_MEMORY_METRIC, "max", None, _gpu_memory),
    Family(f"{SHADOW_METRIC}_bucket", "sum", "le", _shadow_bucket, shadow=True),
    Family(f"{SHADOW_METRIC}_count", "sum", None, _shadow_count, shadow=True),
)


def _queries(model: str, version: str, shadow_of: str | None) -> list[tuple[str, str | None, Setter]]:
    """Every query behind one `VersionReading`: its PromQL, the label it is summed by, and its setter."""
    sel = f'model="{_label(model)}",version="{_label(version)}"'
    if shadow_of is None:
        return [(f.promql(sel), f.label, f.put) for f in FAMILIES if not f.shadow]
    shadow_sel = f'{sel},baseline="{_label(shadow_of)}"'
    return [(f.promql(shadow_sel if f.shadow else sel), f.label, f.put) for f in FAMILIES]


class PrometheusSource:
    """`MetricsSource` backed by Prometheus; queries are templated from the contract's metric names."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.url = url
        self.settle_s = settle_s
        # One session for the client's instant queries and the range queries read here (its retries).
        self._session = requests.Session()
        self._session.verify = False
        self._timeout = int(max(timeout_s, 1))
        self._client = PrometheusConnect(
            url=url, disable_ssl=True, timeout=self._timeout, session=self._session
        )
        self._clock = clock
        self._lock = threading.Lock()  # steps of several rollouts read at once (the workers' threads)
        self._starts: dict[tuple[str, str, str, float], tuple[VersionReading, VersionReading]] = {}

    def observe(
        self,
        model: str,
        baseline_version: str,
        canary_version: str,
        since: float,
        *,
        policy: Policy | None = None,
    ) -> Observations:
        now = self._clock()
        if policy is not None and policy.reads_own_series:
            b = (
                self._provider_reading(policy, model, baseline_version, "baseline", baseline_version, at)
                for at in (since, now)
            )
            c = (
                self._provider_reading(policy, model, canary_version, "canary", baseline_version, at)
                for at in (since, now)
            )
            return observations_of(now - since, (next(b), next(b)), (next(c), next(c)))
        baseline = (self.read(model, baseline_version, since), self.read(model, baseline_version, now))
        canary = (
            self.read(model, canary_version, since, shadow_of=baseline_version),
            self.read(model, canary_version, now, shadow_of=baseline_version),
        )
        return observations_between(now - since, baseline, canary)

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
        """Both arms at every look `since + k * every_s` up to `settle_s` ago, from Prometheus' history:
        one range query per series kind and arm (points on the looks, the first at `since`). Nothing is
        kept here, so a restarted step asks again and reads the same counts. A `policy` that reads
        metric providers is read through their templates (`providers.py`). `from_look` > 1: the range
        queries start at that look; the counters at `since` (look 0), which every look is counted
        from, are read once per step and remembered (a few steps' worth: history does not change)."""
        looks = self._looks(since, every_s)
        first = max(from_look, 1)
        if looks < first:
            return []
        if policy is not None and policy.reads_own_series:
            pb = self._provider_looks(
                policy, model, baseline_version, "baseline", baseline_version, since, every_s, looks
            )
            pc = self._provider_looks(
                policy, model, canary_version, "canary", baseline_version, since, every_s, looks
            )
            return [
                observations_of(k * every_s, (pb[0], pb[k]), (pc[0], pc[k])) for k in range(first, looks + 1)
            ]
        if first == 1:
            baseline = self.read_looks(model, baseline_version, since, every_s, looks)
            canary = self.read_looks(model, canary_version, since, every_s, looks, shadow_of=baseline_version)
            self._remember_start(model, baseline_version, canary_version, since, baseline[0], canary[0])
        else:
            start_b, start_c = self._start_of(model, baseline_version, canary_version, since)
            baseline = self.read_looks(model, baseline_version, since, every_s, looks, first=first)
            canary = self.read_looks(
                model, canary_version, since, every_s, looks, shadow_of=baseline_version, first=first
            )
            baseline[0], canary[0] = start_b, start_c
        return [
            observations_between(k * every_s, (baseline[0], baseline[k]), (canary[0], canary[k]))
            for k in range(first, looks + 1)
        ]

    def _remember_start(
        self, model: str, baseline: str, canary: str, since: float, b: VersionReading, c: VersionReading
    ) -> None:
        with self._lock:
            self._starts[model, baseline, canary, since] = (b, c)
            while len(self._starts) > KEEP_STARTS:
                del self._starts[next(iter(self._starts))]

    def _start_of(
        self, model: str, baseline: str, canary: str, since: float
    ) -> tuple[VersionReading, VersionReading]:
        """Both arms' counters at `since` (look 0): remembered, else read (an instant query each)."""
        with self._lock:
            known = self._starts.get((model, baseline, canary, since))
        if known is None:
            known = (self.read(model, baseline, since), self.read(model, canary, since, shadow_of=baseline))
            self._remember_start(model, baseline, canary, since, *known)
        return known

    def first_request_at(
        self, model: str, version: str, since: float, every_s: float, *, policy: Policy | None = None
    ) -> float | None:
        """From Prometheus' history: the version's request counter read at every look since `since`
        (one range query), the first look above its value at `since`. Nothing is kept here, so a
        restarted step asks again and gets the same moment. A `policy` that reads metric providers
        counts requests with its `metrics_provider`."""
        looks = self._looks(since, every_s)
        if looks < 1:
            return None
        promql = f'sum({REQUESTS_METRIC}{{model="{_label(model)}",version="{_label(version)}"}})'
        if policy is not None and policy.reads_own_series:
            promql = f"sum({requests_query(policy, model, version)})"
        served = self._range(promql, None, since, every_s, looks).get("", {})
        before = served.get(0, 0.0)
        for k in sorted(served):
            if k > 0 and served[k] > before:
                return since + k * every_s
        return None

    def read(self, model: str, version: str, at: float, shadow_of: str | None = None) -> VersionReading:
        """The version's counters as Prometheus knew them at unix time `at`."""
        reading = VersionReading()
        for promql, label, put in _queries(model, version, shadow_of):
            for key, value in self._instant(promql, label, at).items():
                put(reading, key, value)
        return reading

    def read_looks(
        self,
        model: str,
        version: str,
        since: float,
        every_s: float,
        looks: int,
        shadow_of: str | None = None,
        first: int = 0,
    ) -> list[VersionReading]:
        """The version's counters at `since + k * every_s` for k = 0 … `looks` (as `read` at each);
        those before look `first` are not read (left empty)."""
        readings = [VersionReading() for _ in range(looks + 1)]
        for promql, label, put in _queries(model, version, shadow_of):
            for key, points in self._range(promql, label, since, every_s, looks, first).items():
                for k, value in points.items():
                    put(readings[k], key, value)
        return readings

    def _provider_reading(
        self, policy: Policy, model: str, version: str, arm: str, baseline_version: str, at: float
    ) -> ArmReading:
        """One arm's counters under `policy`'s providers, as Prometheus knew them at `at`."""
        reading = ArmReading()
        for query in policy_queries(policy, model, version, arm, baseline_version):
            for key, value in self._instant(query.promql, query.label, at).items():
                put_answer(reading, query, key, value)
        return settle(reading)

    def _provider_looks(
        self,
        policy: Policy,
        model: str,
        version: str,
        arm: str,
        baseline_version: str,
        since: float,
        every_s: float,
        looks: int,
    ) -> list[ArmReading]:
        """As `_provider_reading` at `since + k * every_s` for k = 0 … `looks` (a range query each)."""
        readings = [ArmReading() for _ in range(looks + 1)]
        for query in policy_queries(policy, model, version, arm, baseline_version):
            for key, points in self._range(query.promql, query.label, since, every_s, looks).items():
                for k, value in points.items():
                    put_answer(readings[k], query, key, value)
        return [settle(r) for r in readings]

    def scraped(self, model: str, version: str) -> bool | None:
        """From `up`, by the arm labels the rendered PodMonitor gives every target: True once a target
        of `version` was scraped up, False while the model's targets carry the labels but none of
        `version` is up yet, None where no target of the model carries them (a Prometheus configured
        otherwise, e.g. one multi-version server behind a static target: nothing to wait for)."""
        promql = f'max by ({ARM_VERSION_LABEL}) (up{{{ARM_MODEL_LABEL}="{_label(model)}"}})'
        by_version = self._instant(promql, ARM_VERSION_LABEL, self._clock())
        if not by_version:
            return None
        return by_version.get(version, 0.0) >= 1.0

    def _looks(self, since: float, every_s: float) -> int:
        """Looks since `since` at least `settle_s` old (one exactly that old included)."""
        return int((self._clock() - self.settle_s - since) / every_s + 1e-9)

    def _instant(self, promql: str, label: str | None, at: float) -> dict[str, float]:
        """Each series' value at `at`, by its `label` value ("" when summed to one series)."""
        try:
            result = self._client.custom_query(promql, params={"time": f"{at:.3f}"})
        except Exception as exc:  # requests / client errors: name the server and the query
            raise MetricsError(f"prometheus {self.url}: query {promql!r} failed: {exc}") from exc
        out: dict[str, float] = {}
        for sample in result or []:
            metric, value = sample.get("metric") or {}, sample.get("value") or [0, "nan"]
            out[str(metric.get(label, "")) if label else ""] = float(value[1])
        return out

    def _range(
        self, promql: str, label: str | None, since: float, every_s: float, looks: int, start_look: int = 0
    ) -> dict[str, dict[int, float]]:
        """Each series' values at looks `start_look` … `looks` (look k at `since + k * every_s`), by
        label value."""
        out: dict[str, dict[int, float]] = {}
        for metric, points in self.range_series(promql, since, every_s, looks, start_look):
            out.setdefault(str(metric.get(label, "")) if label else "", {}).update(points)
        return out

    def range_series(
        self, promql: str, since: float, every_s: float, looks: int, start_look: int = 0
    ) -> list[tuple[dict[str, str], dict[int, float]]]:
        """Each series' labels and its values at looks `start_look` … `looks` (look k at `since + k *
        every_s`): one range query per MAX_POINTS looks.

        Asked and parsed here, not through the client: a batched read's answer holds every rollout's
        series (at 500 rollouts, parsing it with the standard library's JSON decoder was two fifths
        of the controller's interpreter time); orjson reads the same numbers several times faster."""
        out: list[tuple[dict[str, str], dict[int, float]]] = []
        for first in range(start_look, looks + 1, MAX_POINTS):
            start, end = since + every_s * first, since + every_s * min(first + MAX_POINTS - 1, looks)
            try:
                response = self._session.get(
                    f"{self.url}/api/v1/query_range",
                    params={
                        "query": promql,
                        # exact to the millisecond: whole seconds would move the grid off the looks
                        "start": f"{start:.3f}",
                        "end": f"{end:.3f}",
                        "step": f"{every_s:g}",  # seconds as a number: durations like 0.25s are refused
                    },
                    timeout=self._timeout,
                )
                if response.status_code != 200:
                    raise RuntimeError(
                        f"HTTP Status Code {response.status_code} ({response.content[:500]!r})"
                    )
                result = orjson.loads(response.content)["data"]["result"]
            except Exception as exc:  # requests / client errors: name the server and the query
                raise MetricsError(f"prometheus {self.url}: range query {promql!r} failed: {exc}") from exc
            for series in result or []:
                points = {
                    round((float(at) - since) / every_s): float(value)
                    for at, value in series.get("values") or []
                }
                out.append(({str(k): str(v) for k, v in (series.get("metric") or {}).items()}, points))
        return out
