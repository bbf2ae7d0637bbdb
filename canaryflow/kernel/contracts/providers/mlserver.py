"""Seldon MLServer's REST metrics: starlette_exporter's `PrometheusMiddleware` (mounted by
`mlserver/rest/app.py` with `prefix=settings.metrics_rest_server_prefix`, default `rest_server`,
`app_name="mlserver"`): the `rest_server_request_duration_seconds` histogram (prometheus_client's
default buckets, 5 ms … 10 s) and `rest_server_requests_total`, both by `method`, `path` (the route
template), `status_code`, `app_name`. Only inference routes count (`path` ending in `/infer`). MLServer's
own `model_infer_request_duration` is a summary (no buckets), so it cannot be compared. The arms are told
apart by the pod's target labels (`POD_SELECTOR`)."""

from __future__ import annotations

from canaryflow.kernel.contracts.providers.base import POD_SELECTOR, MetricProvider, Provenance, SignalQueries

_SEL = f'{POD_SELECTOR},app_name="mlserver",path=~".*/infer"'

PROVIDER = MetricProvider(
    name="mlserver",
    description="MLServer: rest_server_request_duration_seconds, rest_server_requests_total (/infer)",
    signals={
        "latency": SignalQueries(
            histogram=f"sum by (le) (rest_server_request_duration_seconds_bucket{{{_SEL}}})",
            count=f"sum(rest_server_request_duration_seconds_count{{{_SEL}}})",
        ),
        "requests": SignalQueries(
            requests=f"sum(rest_server_requests_total{{{_SEL}}})",
            errors=f'sum(rest_server_requests_total{{{_SEL},status_code=~"5.."}})',
        ),
    },
    provenance=(
        Provenance(
            repo="SeldonIO/MLServer",
            commit="a325e523b5a580d49aeb06e19e73e4a90176b63b",
            paths=("mlserver/rest/app.py", "mlserver/settings.py", "mlserver/handlers/dataplane.py"),
        ),
        Provenance(
            repo="stephenhillier/starlette_exporter",
            commit="05b9e18ccbd6f2925a229805d21b87a4000a740f",
            paths=("starlette_exporter/middleware.py",),
        ),
    ),
)
