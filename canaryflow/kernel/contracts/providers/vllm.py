"""vLLM's engine metrics (`vllm/v1/metrics/loggers.py`, `PrometheusStatLogger`): histograms of time to
first token, time per output token and end-to-end latency, and finished requests by `finished_reason`
(`stop`, `length`, `abort`; newer releases add `error`, `repetition`). vLLM labels them `model_name` and
`engine`; the arms are told apart by the pod's target labels (`POD_SELECTOR`)."""

from __future__ import annotations

from canaryflow.kernel.contracts.providers.base import POD_SELECTOR, MetricProvider, Provenance, SignalQueries


def _histogram(family: str) -> SignalQueries:
    return SignalQueries(
        histogram=f"sum by (le) ({family}_bucket{{{POD_SELECTOR}}})",
        count=f"sum({family}_count{{{POD_SELECTOR}}})",
    )


_FINISHED = "vllm:request_success_total"

PROVIDER = MetricProvider(
    name="vllm",
    description="vLLM: vllm:e2e_request_latency_seconds, vllm:time_to_first_token_seconds, "
    "vllm:time_per_output_token_seconds, vllm:request_success_total by finished_reason",
    signals={
        "latency": _histogram("vllm:e2e_request_latency_seconds"),
        # Every finished request; the version's failures: aborted (which includes a client that left)
        # and, in releases that have it, `error` (always answered 500).
        "requests": SignalQueries(
            requests=f"sum({_FINISHED}{{{POD_SELECTOR}}})",
            errors=f'sum({_FINISHED}{{{POD_SELECTOR},finished_reason=~"abort|error"}})',
        ),
        "time_to_first_token": _histogram("vllm:time_to_first_token_seconds"),
        "time_per_output_token": _histogram("vllm:time_per_output_token_seconds"),
        "e2e_latency": _histogram("vllm:e2e_request_latency_seconds"),
        "finish_reason": SignalQueries(
            requests=f"sum({_FINISHED}{{{POD_SELECTOR}}})",
            errors=f'sum({_FINISHED}{{{POD_SELECTOR},finished_reason=~"{{{{reasons}}}}"}})',
        ),
    },
    provenance=(
        Provenance(
            repo="vllm-project/vllm",
            commit="005a810bc40faa25b8870fbc8559c3462581eee3",
            paths=("vllm/v1/metrics/loggers.py",),
        ),
    ),
)
