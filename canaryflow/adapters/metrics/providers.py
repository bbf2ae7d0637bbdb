"""Reading a policy's metric providers through Prometheus: each template rendered for one arm, its
answer put where the analysis expects it (the step's requests and latency, or one metric's own series).

A policy that reads only canaryflow's own server is read by `PrometheusSource`'s own queries, as
before; this module serves every other one (`Policy.reads_own_series`). The step's series (what the
guards count: minimum samples, sample ratio, the canary's first request) come from the policy's
`metrics_provider`; a metric whose provider, query or kind differs gets its own (`per_metric`).
A histogram query that answers without `le` labels, or a template that cannot be filled, is a
`MetricsQueryError` naming the policy field: a mistake in the policy, which waiting will not mend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from canaryflow.adapters.metrics.readings import VersionReading, arm_between, observations_between
from canaryflow.kernel.analysis.kinds import metric_kind
from canaryflow.kernel.analysis.observations import MetricArms, Observations
from canaryflow.kernel.contracts.providers import STEP_SIGNALS, SignalQueries, metric_provider, render
from canaryflow.kernel.ports import MetricsQueryError
from policies.model import Policy

_ALL, _FAILED = "all", "5xx"  # a rate's two counters, held as codes until `_settle`


@dataclass
class ArmReading:
    """One arm's counters under a policy: the step's (`step`) and each metric's own, by name."""

    step: VersionReading = field(default_factory=VersionReading)
    metrics: dict[str, VersionReading] = field(default_factory=dict)

    def target(self, metric: str | None) -> VersionReading:
        return self.step if metric is None else self.metrics.setdefault(metric, VersionReading())


Put = Callable[[ArmReading, str, float], None]


@dataclass(frozen=True)
class Query:
    """One rendered query: its PromQL, the label its answer is split by, where the value goes, and the
    policy field it came from (named in errors)."""

    promql: str
    label: str | None
    put: Put
    field: str


def _histogram_puts(metric: str | None, unit_s: float, shadow: bool) -> tuple[Put, Put]:
    def bucket(reading: ArmReading, le: str, value: float) -> None:
        target = reading.target(metric)
        bounds = target.shadow_buckets if shadow else target.latency_buckets
        bounds[float(le) * unit_s] = value

    def count(reading: ArmReading, _: str, value: float) -> None:
        target = reading.target(metric)
        if shadow:
            target.shadow_count = value
        else:
            target.latency_count = value

    return bucket, count


def _counter_put(metric: str | None, code: str) -> Put:
    def put(reading: ArmReading, _: str, value: float) -> None:
        codes = reading.target(metric).requests_by_code
        codes[code] = codes.get(code, 0.0) + value

    return put


def _gauge_put(metric: str | None) -> Put:
    def put(reading: ArmReading, _: str, value: float) -> None:
        reading.target(metric).gpu_memory_bytes = value

    return put


def _signal_queries(
    queries: SignalQueries, values: dict[str, str], metric: str | None, where: str, shadow: bool = False
) -> list[Query]:
    out: list[Query] = []

    def add(name: str, label: str | None, put: Put) -> None:
        template = getattr(queries, name)
        if template is None:
            return
        try:
            promql = render(template, values)
        except ValueError as exc:
            raise MetricsQueryError(f"{where}.{name}: {exc}") from None
        out.append(Query(promql, label, put, f"{where}.{name}"))

    bucket, count = _histogram_puts(metric, queries.unit_s, shadow)
    add("histogram", "le", bucket)
    add("count", None, count)
    add("requests", None, _counter_put(metric, _ALL))
    add("errors", None, _counter_put(metric, _FAILED))
    add("value", None, _gauge_put(metric))
    return out


def policy_queries(policy: Policy, model: str, version: str, arm: str, baseline_version: str) -> list[Query]:
    """Every query behind one arm's `ArmReading` under `policy`."""
    base = {"model": model, "version": version, "arm": arm, "baseline_version": baseline_version}
    provider = metric_provider(policy.metrics_provider)
    where = f"metrics_provider ({provider.name})"
    out: list[Query] = []
    for signal in ("latency", "requests", "gpu_memory", "shadow_distance"):
        if signal in provider.signals and (signal != "shadow_distance" or arm == "canary"):
            out += _signal_queries(
                provider.signals[signal], base, None, f"{where}.{signal}", shadow=signal == "shadow_distance"
            )
    for i, metric in enumerate(policy.metrics):
        signal = metric_kind(metric.kind).signal
        own = metric.query is not None or metric.provider not in (None, policy.metrics_provider)
        if not own and signal in STEP_SIGNALS:
            continue  # judged on the step's series, read above
        queries = metric.queries(policy.metrics_provider)
        if queries is None:  # the policy model refuses this at load
            raise MetricsQueryError(f"metrics[{i}]: no series for a {metric.kind} metric")
        values = {**base, "reasons": "|".join(metric.finish_reasons)}
        where = (
            f"metrics[{i}].query"
            if metric.query is not None
            else f"metrics[{i}] ({metric.provider or provider.name})"
        )
        out += _signal_queries(queries, values, metric.name, where, shadow=signal == "shadow_distance")
    return out


def requests_query(policy: Policy, model: str, version: str) -> str:
    """The step's request counter for `version` (where the warm-up finds the canary's first request)."""
    provider = metric_provider(policy.metrics_provider)
    template = provider.signals["requests"].requests
    assert template is not None  # every built-in provider counts requests
    return render(template, {"model": model, "version": version, "arm": "canary", "baseline_version": ""})


def put_answer(reading: ArmReading, query: Query, key: str, value: float) -> None:
    """One answered series into the reading; a histogram answer without `le` is the policy's mistake."""
    if query.label == "le" and not key:
        raise MetricsQueryError(
            f"{query.field}: the query returned series without an `le` label: not histogram buckets "
            f"(expected e.g. sum by (le) (x_bucket{{...}})): {query.promql}"
        )
    query.put(reading, key, value)


def settle(reading: ArmReading) -> ArmReading:
    """Counters as `VersionReading` holds them: a rate's two counters as successes and 5xx, a histogram
    without a count query counted by its `+Inf` bucket."""
    for target in (reading.step, *reading.metrics.values()):
        codes = target.requests_by_code
        if _ALL in codes:
            failed = codes.get(_FAILED, 0.0)
            target.requests_by_code = {"2xx": max(codes[_ALL] - failed, 0.0), _FAILED: failed}
        for buckets, count in (
            (target.latency_buckets, "latency_count"),
            (target.shadow_buckets, "shadow_count"),
        ):
            if not getattr(target, count) and float("inf") in buckets:
                setattr(target, count, buckets[float("inf")])
    return reading


def observations_of(
    elapsed_s: float, baseline: tuple[ArmReading, ArmReading], canary: tuple[ArmReading, ArmReading]
) -> Observations:
    """What both arms served between two readings each: the step's series and each metric's own."""
    step = observations_between(
        elapsed_s, (baseline[0].step, baseline[1].step), (canary[0].step, canary[1].step)
    )
    names = sorted(set(baseline[1].metrics) | set(canary[1].metrics))
    per_metric = {
        name: MetricArms(
            baseline=arm_between(
                baseline[0].metrics.get(name), baseline[1].metrics.get(name, VersionReading())
            ),
            canary=arm_between(canary[0].metrics.get(name), canary[1].metrics.get(name, VersionReading())),
        )
        for name in names
    }
    return step.model_copy(update={"per_metric": per_metric})
