"""Knative Serving's queue-proxy, in front of every revision's container (KServe serverless included):
`kn.serving.invocation.duration` (`pkg/queue/request_metric.go`, seconds, buckets 5 ms … 10 s, by
`http.response.status_code`), an OpenTelemetry histogram that its Prometheus exporter exposes as
`kn_serving_invocation_duration_seconds` with the label `http_response_status_code`. Probes are not
counted. The arms are told apart by the pod's target labels (`POD_SELECTOR`)."""

from __future__ import annotations

from canaryflow.kernel.contracts.providers.base import POD_SELECTOR, MetricProvider, Provenance, SignalQueries

_FAMILY = "kn_serving_invocation_duration_seconds"

PROVIDER = MetricProvider(
    name="knative",
    description="Knative/KServe queue-proxy: kn_serving_invocation_duration_seconds per revision's pods",
    signals={
        "latency": SignalQueries(
            histogram=f"sum by (le) ({_FAMILY}_bucket{{{POD_SELECTOR}}})",
            count=f"sum({_FAMILY}_count{{{POD_SELECTOR}}})",
        ),
        "requests": SignalQueries(
            requests=f"sum({_FAMILY}_count{{{POD_SELECTOR}}})",
            errors=f'sum({_FAMILY}_count{{{POD_SELECTOR},http_response_status_code=~"5.."}})',
        ),
    },
    provenance=(
        Provenance(
            repo="knative/serving",
            commit="98e5ef90aa7033797aa0a61ef97f3ff7e49a3944",
            paths=("pkg/queue/request_metric.go",),
        ),
    ),
)
