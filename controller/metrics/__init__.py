"""Where the analysis gets its observations: a small protocol, one file per backend, a factory.

    source = metrics_source_from_settings()          # controller.metrics.factory
    obs = source.observe(model, baseline_version, canary_version, since=step_started_at)

`since` is the unix time the traffic step started; the returned `Observations` count what each
version served after it (`elapsed_s` = now - since). Backends: `prometheus.PrometheusSource`
(PromQL through prometheus-api-client) and `scrape.ScrapeSource` (reads the inference servers'
own /metrics and subtracts the reading taken at the step start).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from controller.analysis.observations import Observations

__all__ = ["MetricsError", "MetricsSource"]


class MetricsError(RuntimeError):
    """The metrics backend could not be read (unreachable, bad answer); the message says which."""


@runtime_checkable
class MetricsSource(Protocol):
    """Counts per version since a moment: what the analysis engine compares."""

    def observe(
        self, model: str, baseline_version: str, canary_version: str, since: float
    ) -> Observations: ...
