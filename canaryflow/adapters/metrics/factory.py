"""Which metrics source the controller uses, from its settings (env `CANARYFLOW_METRICS_*`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from canaryflow.adapters.metrics import MetricsSource
from canaryflow.kernel.component_settings import ComponentSettings


class MetricsSettings(ComponentSettings):
    """`backend: prometheus` needs `prometheus_url`; `backend: scrape` needs `scrape_targets`."""

    section: ClassVar[str] = "metrics"

    backend: Literal["prometheus", "scrape"] = "prometheus"
    prometheus_url: str = "http://127.0.0.1:9090"
    scrape_targets: list[str] = Field(default_factory=list, description="/metrics URLs of the servers")
    timeout_s: float = Field(default=10.0, gt=0)
    batched_reads: bool = Field(
        default=True,
        description="the local runner reads every rollout's looks in one query per metric family "
        "per look, off the reconcile thread (canaryflow/adapters/metrics/batched.py); false: each "
        "rollout's own queries, as the Argo analysis pods read",
    )
    read_process: bool = Field(
        default=True,
        description="the batched reads' queries are asked and their answers parsed in a process of "
        "their own (canaryflow/adapters/metrics/read_process.py), off the controller's interpreter; "
        "false: on the controller's threads",
    )


def metrics_source_from_settings(settings: MetricsSettings) -> MetricsSource:
    if settings.backend == "scrape":
        from canaryflow.adapters.metrics.scrape import ScrapeSource

        if not settings.scrape_targets:
            raise ValueError("metrics.scrape_targets: the scrape backend needs at least one /metrics URL")
        return ScrapeSource(settings.scrape_targets, timeout_s=settings.timeout_s)
    from canaryflow.adapters.metrics.prometheus import PrometheusSource

    return PrometheusSource(settings.prometheus_url, timeout_s=settings.timeout_s)


def batched_source_from_settings(source: MetricsSource, settings: MetricsSettings) -> MetricsSource:
    """`source` for a process that runs every rollout's analysis (the local runner): its live looks
    read in batches where it is Prometheus and `batched_reads` is on, else `source` as it is."""
    if not settings.batched_reads:
        return source
    from canaryflow.adapters.metrics.batched import BatchedSource
    from canaryflow.adapters.metrics.prometheus import PrometheusSource

    if not isinstance(source, PrometheusSource):
        return source
    if settings.read_process:
        from canaryflow.adapters.metrics.read_process import ProcessReads

        return BatchedSource(source, chunk_reader=ProcessReads(source.url, timeout_s=settings.timeout_s))
    return BatchedSource(source)
