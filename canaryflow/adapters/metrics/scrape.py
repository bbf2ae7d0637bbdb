"""Observations read straight from the inference servers' /metrics, for one-machine runs without
a Prometheus: each look scrapes every target and subtracts the reading taken at the step start.

The start reading is the first scrape made for a given `since`; what was served between the step
start and that first look is not counted (observe once right when the step starts). Likewise the
canary's first request is the first look at which its counter had grown, and the looks latencies are
paired on are the calls made, remembered in this process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import httpx
from prometheus_client.parser import text_string_to_metric_families

from canaryflow.adapters.metrics import MetricsError, MetricsQueryError
from canaryflow.adapters.metrics.readings import (
    GPU_MEMORY_METRIC,
    LATENCY_METRIC,
    REQUESTS_METRIC,
    SHADOW_METRIC,
    VersionReading,
    observations_between,
)
from canaryflow.kernel.analysis.observations import Observations
from policies.model import Policy

Key = tuple[str, str, str, float]
_KEEP_STEPS = 256


class ScrapeSource:
    """`MetricsSource` over the servers' own metrics endpoints (URLs ending in /metrics)."""

    def __init__(
        self, targets: Sequence[str], *, timeout_s: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        if not targets:
            raise ValueError("targets: at least one /metrics URL is needed")
        self.targets = list(targets)
        self._timeout = timeout_s
        self._clock = clock
        self._start: dict[Key, tuple[VersionReading, VersionReading]] = {}
        self._first: dict[Key, tuple[float, float | None]] = {}  # requests at the first look, first seen
        self._looks: dict[Key, list[Observations]] = {}  # readings kept as looks, per step

    def observe(
        self,
        model: str,
        baseline_version: str,
        canary_version: str,
        since: float,
        *,
        policy: Policy | None = None,
    ) -> Observations:
        _canaryflow_only(policy)
        now = self._clock()
        text = self._scrape_all()
        baseline = parse_reading(text, model, baseline_version)
        canary = parse_reading(text, model, canary_version, shadow_of=baseline_version)
        key = (model, baseline_version, canary_version, since)
        start = self._start.setdefault(key, (baseline, canary))
        while len(self._start) > _KEEP_STEPS:  # steps long finished: forget their start readings
            del self._start[next(iter(self._start))]
        return observations_between(now - since, (start[0], baseline), (start[1], canary))

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
        """The readings this process took at its earlier calls for this `since` (at most one per
        `every_s`), then now: the servers' counters have no history, so a look is a call, and a
        restarted process starts again from its first call. `from_look`: from the n-th of them on."""
        return self._all_looks(model, baseline_version, canary_version, since, every_s, policy)[
            from_look - 1 :
        ]

    def _all_looks(
        self,
        model: str,
        baseline_version: str,
        canary_version: str,
        since: float,
        every_s: float,
        policy: Policy | None,
    ) -> list[Observations]:
        now = self.observe(model, baseline_version, canary_version, since, policy=policy)
        key = (model, baseline_version, canary_version, since)
        taken = self._looks.setdefault(key, [])
        while len(self._looks) > _KEEP_STEPS:
            del self._looks[next(iter(self._looks))]
        if taken and now.elapsed_s - taken[-1].elapsed_s < every_s - 1e-9:
            return [*taken, now]
        taken.append(now)
        return list(taken)

    def first_request_at(
        self, model: str, version: str, since: float, every_s: float, *, policy: Policy | None = None
    ) -> float | None:
        """The first look (a call of this) at which the version's request counter had grown since the
        first call for this `since`. Kept in this process only: the servers' counters have no history."""
        _canaryflow_only(policy)
        now = self._clock()
        key = (model, version, "", since)
        served = parse_reading(self._scrape_all(), model, version).requests
        start, seen = self._first.setdefault(key, (served, None))
        if seen is None and served > start:
            seen = now
            self._first[key] = (start, seen)
        while len(self._first) > _KEEP_STEPS:
            del self._first[next(iter(self._first))]
        return seen

    def scraped(self, model: str, version: str) -> bool | None:
        """None: this source reads the servers itself at each look, so no scrape can lag behind."""
        return None

    def _scrape_all(self) -> list[str]:
        pages = []
        with httpx.Client(timeout=self._timeout) as client:
            for url in self.targets:
                try:
                    response = client.get(url)
                    response.raise_for_status()
                except httpx.HTTPError as exc:
                    raise MetricsError(f"scrape {url}: {exc}") from exc
                pages.append(response.text)
        return pages


def _canaryflow_only(policy: Policy | None) -> None:
    if policy is not None and policy.reads_own_series:
        raise MetricsQueryError(
            f"metrics_provider: the scrape backend reads canaryflow's own servers only; policy "
            f"{policy.name!r} reads metric providers or queries: use the prometheus backend"
        )


def parse_reading(
    pages: Sequence[str], model: str, version: str, shadow_of: str | None = None
) -> VersionReading:
    """Sum one version's series over every scraped page (several replicas serve the same version)."""
    reading = VersionReading()
    memory: list[float] = []
    for page in pages:
        for family in text_string_to_metric_families(page):
            for sample in family.samples:
                labels = sample.labels
                if labels.get("model") != model or labels.get("version") != version:
                    continue
                name, value = sample.name, float(sample.value)
                if name == f"{LATENCY_METRIC}_bucket":
                    le = float(labels["le"])
                    reading.latency_buckets[le] = reading.latency_buckets.get(le, 0.0) + value
                elif name == f"{LATENCY_METRIC}_count":
                    reading.latency_count += value
                elif name == REQUESTS_METRIC:
                    code = labels.get("code", "")
                    reading.requests_by_code[code] = reading.requests_by_code.get(code, 0.0) + value
                elif name == GPU_MEMORY_METRIC:
                    memory.append(value)
                elif shadow_of is not None and labels.get("baseline") == shadow_of:
                    if name == f"{SHADOW_METRIC}_bucket":
                        le = float(labels["le"])
                        reading.shadow_buckets[le] = reading.shadow_buckets.get(le, 0.0) + value
                    elif name == f"{SHADOW_METRIC}_count":
                        reading.shadow_count += value
    reading.gpu_memory_bytes = max(memory) if memory else None
    return reading
