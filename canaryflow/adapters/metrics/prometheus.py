"""Observations from a Prometheus server (PromQL through prometheus-api-client).

Counters are read at the step start and now (instant queries with `time=`), by `model`/`version`
label, and subtracted: exact integer counts per bucket, unlike `increase()`, which extrapolates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_api_client import PrometheusConnect

from canaryflow.adapters.metrics import MetricsError
from canaryflow.adapters.metrics.readings import (
    GPU_MEMORY_METRIC,
    LATENCY_METRIC,
    REQUESTS_METRIC,
    SHADOW_METRIC,
    VersionReading,
    observations_between,
)
from canaryflow.kernel.analysis.observations import Observations


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class PrometheusSource:
    """`MetricsSource` backed by Prometheus; queries are templated from the contract's metric names."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._client = PrometheusConnect(url=url, disable_ssl=True, timeout=int(max(timeout_s, 1)))
        self._clock = clock

    def observe(self, model: str, baseline_version: str, canary_version: str, since: float) -> Observations:
        now = self._clock()
        baseline = (self.read(model, baseline_version, since), self.read(model, baseline_version, now))
        canary = (
            self.read(model, canary_version, since, shadow_of=baseline_version),
            self.read(model, canary_version, now, shadow_of=baseline_version),
        )
        return observations_between(now - since, baseline, canary)

    def first_request_at(self, model: str, version: str, since: float, every_s: float) -> float | None:
        """From Prometheus' history: the version's request counter read at every look since `since`
        (one range query), the first look above its value at `since`. Nothing is kept here, so a
        restarted step asks again and gets the same moment."""
        now = self._clock()
        looks = int((now - since) // every_s)
        if looks < 1:
            return None
        promql = f'sum({REQUESTS_METRIC}{{model="{_label(model)}",version="{_label(version)}"}})'
        before = self._scalar(promql, since) or 0.0
        # At most 10,000 looks per query (Prometheus refuses more than 11,000 points): later ones next time.
        start, end = since + every_s, since + every_s * min(looks, 10_000)
        try:
            result = self._client.custom_query_range(
                promql,
                start_time=datetime.fromtimestamp(start, tz=UTC),
                end_time=datetime.fromtimestamp(end, tz=UTC),
                step=f"{every_s:g}",  # seconds as a number: durations like 0.25s are refused
                # The client rounds start and end to whole seconds, which moves the grid off the looks
                # and can drop the latest one; its `params` win over its own, so the exact times go.
                params={"start": f"{start:.3f}", "end": f"{end:.3f}"},
            )
        except Exception as exc:  # requests / client errors: name the server and the query
            raise MetricsError(f"prometheus {self.url}: range query {promql!r} failed: {exc}") from exc
        for series in result or []:
            for at, value in series.get("values") or []:
                if float(value) > before:
                    return float(at)
        return None

    def read(self, model: str, version: str, at: float, shadow_of: str | None = None) -> VersionReading:
        """The version's counters as Prometheus knew them at unix time `at`."""
        sel = f'model="{_label(model)}",version="{_label(version)}"'
        reading = VersionReading(
            latency_buckets=self._by_le(f"sum by (le) ({LATENCY_METRIC}_bucket{{{sel}}})", at),
            latency_count=self._scalar(f"sum({LATENCY_METRIC}_count{{{sel}}})", at) or 0.0,
            requests_by_code=self._by_label(f"sum by (code) ({REQUESTS_METRIC}{{{sel}}})", "code", at),
            gpu_memory_bytes=self._scalar(f"max({GPU_MEMORY_METRIC}{{{sel}}})", at),
        )
        if shadow_of is not None:
            shadow_sel = f'{sel},baseline="{_label(shadow_of)}"'
            reading.shadow_buckets = self._by_le(f"sum by (le) ({SHADOW_METRIC}_bucket{{{shadow_sel}}})", at)
            reading.shadow_count = self._scalar(f"sum({SHADOW_METRIC}_count{{{shadow_sel}}})", at) or 0.0
        return reading

    def _query(self, promql: str, at: float) -> list[dict[str, object]]:
        try:
            result = self._client.custom_query(promql, params={"time": f"{at:.3f}"})
        except Exception as exc:  # requests / client errors: name the server and the query
            raise MetricsError(f"prometheus {self.url}: query {promql!r} failed: {exc}") from exc
        return list(result or [])

    def _by_label(self, promql: str, label: str, at: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for sample in self._query(promql, at):
            metric = sample.get("metric") or {}
            value = sample.get("value") or [0, "0"]
            assert isinstance(metric, dict) and isinstance(value, list)
            out[str(metric.get(label, ""))] = float(value[1])
        return out

    def _by_le(self, promql: str, at: float) -> dict[float, float]:
        return {float(le): v for le, v in self._by_label(promql, "le", at).items() if le}

    def _scalar(self, promql: str, at: float) -> float | None:
        samples = self._query(promql, at)
        if not samples:
            return None
        value = samples[0].get("value") or [0, "nan"]
        assert isinstance(value, list)
        return float(value[1])
