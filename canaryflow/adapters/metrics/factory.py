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


def metrics_source_from_settings(settings: MetricsSettings) -> MetricsSource:
    if settings.backend == "scrape":
        from canaryflow.adapters.metrics.scrape import ScrapeSource

        if not settings.scrape_targets:
            raise ValueError("metrics.scrape_targets: the scrape backend needs at least one /metrics URL")
        return ScrapeSource(settings.scrape_targets, timeout_s=settings.timeout_s)
    from canaryflow.adapters.metrics.prometheus import PrometheusSource

    return PrometheusSource(settings.prometheus_url, timeout_s=settings.timeout_s)
