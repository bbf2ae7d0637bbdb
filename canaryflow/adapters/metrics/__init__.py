"""Where the analysis gets its observations: the kernel's `MetricsSource` port, a file per backend.

    source = metrics_source_from_settings(settings)  # canaryflow.adapters.metrics.factory
    obs = source.observe(model, baseline_version, canary_version, since=step_started_at)

`since` is the unix time the traffic step started; the returned `Observations` count what each
version served after it (`elapsed_s` = now - since). Backends: `prometheus.PrometheusSource`
(PromQL through prometheus-api-client) and `scrape.ScrapeSource` (reads the inference servers'
own /metrics and subtracts the reading taken at the step start).
"""

from canaryflow.kernel.ports import MetricsError, MetricsQueryError, MetricsSource

__all__ = ["MetricsError", "MetricsQueryError", "MetricsSource"]
