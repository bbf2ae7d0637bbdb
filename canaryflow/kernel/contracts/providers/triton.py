"""NVIDIA Triton Inference Server's per-model metrics (triton-inference-server/core `src/metrics.cc`,
`src/metric_model_reporter.{h,cc}`): `nv_inference_request_success` / `nv_inference_request_failure`
(by `reason`: REJECTED, CANCELED, BACKEND, OTHER) counters and the one histogram,
`nv_inference_first_response_histogram_ms` (buckets 100, 500, 2000, 5000 ms unless the model's
`metric_control` sets others; on only with `--metrics-config histogram_latencies=true`), which for a
decoupled (LLM) model is the time to first token. Triton's own `model`/`version` labels are its model
repository's; the arms are told apart by the pod's target labels (`POD_SELECTOR`)."""

from __future__ import annotations

from canaryflow.kernel.contracts.providers.base import POD_SELECTOR, MetricProvider, Provenance, SignalQueries

_FIRST = "nv_inference_first_response_histogram_ms"
_FIRST_RESPONSE = SignalQueries(
    histogram=f"sum by (le) ({_FIRST}_bucket{{{POD_SELECTOR}}})",
    count=f"sum({_FIRST}_count{{{POD_SELECTOR}}})",
    unit_s=0.001,
)

PROVIDER = MetricProvider(
    name="triton",
    description="Triton: nv_inference_first_response_histogram_ms, nv_inference_request_success/failure",
    signals={
        "latency": _FIRST_RESPONSE,
        "requests": SignalQueries(
            requests=f"sum(nv_inference_request_success{{{POD_SELECTOR}}})"
            f" + (sum(nv_inference_request_failure{{{POD_SELECTOR}}}) or vector(0))",
            errors=f'sum(nv_inference_request_failure{{{POD_SELECTOR},reason=~"BACKEND|OTHER"}})',
        ),
        "time_to_first_token": _FIRST_RESPONSE,
    },
    provenance=(
        Provenance(
            repo="triton-inference-server/core",
            commit="73aad7c3348d040c7087d57837d75822c488495e",
            paths=(
                "src/metrics.cc",
                "src/metric_model_reporter.cc",
                "src/metric_model_reporter.h",
                "src/constants.h",
            ),
        ),
    ),
)
