"""Istio's standard metrics, as each version's sidecar reports what it served (`reporter="destination"`):
the `istio_request_duration_milliseconds` histogram (Envoy's default buckets, 0.5 ms … 3,600,000 ms)
and `istio_requests_total`, by `destination_canonical_service` (the model: the pod's
`service.istio.io/canonical-name`, else `app.kubernetes.io/name`), `destination_canonical_revision`
(the version: `service.istio.io/canonical-revision`, else `app.kubernetes.io/version`, else `version`;
`pkg/kube/labels/labels.go`; canaryflow's version pods carry `app.kubernetes.io/version`) and
`response_code`. The mesh sees every request whatever the server behind it."""

from __future__ import annotations

from canaryflow.kernel.contracts.providers.base import MetricProvider, Provenance, SignalQueries

_SEL = (
    'reporter="destination",destination_canonical_service="{{model}}",'
    'destination_canonical_revision="{{version}}"'
)

PROVIDER = MetricProvider(
    name="istio",
    description="Istio: istio_request_duration_milliseconds, istio_requests_total by canonical revision",
    signals={
        "latency": SignalQueries(
            histogram=f"sum by (le) (istio_request_duration_milliseconds_bucket{{{_SEL}}})",
            count=f"sum(istio_request_duration_milliseconds_count{{{_SEL}}})",
            unit_s=0.001,
        ),
        "requests": SignalQueries(
            requests=f"sum(istio_requests_total{{{_SEL}}})",
            errors=f'sum(istio_requests_total{{{_SEL},response_code=~"5.."}})',
        ),
    },
    provenance=(
        Provenance(
            repo="istio/istio",
            commit="86c9f01fd735fb01d8192f5bcaf0d424afb7f14c",
            paths=(
                "pilot/pkg/model/telemetry.go",
                "pkg/kube/labels/labels.go",
                "tests/integration/telemetry/api/stats_test.go",
            ),
        ),
        Provenance(
            repo="envoyproxy/envoy",
            commit="v1.39.1",
            paths=("source/common/stats/histogram_impl.cc",),
        ),
    ),
)
