"""Hugging Face Text Embeddings Inference's router metrics (`router/src/lib.rs`, `router/src/prometheus.rs`,
`core/src/infer.rs`): the `te_request_duration` histogram (seconds; 35 geometric buckets from 1.5e-5 s,
×1.5 each), `te_request_count` (by `method`) and `te_request_failure` (by `err`). The version's own
failures are `overloaded`, `inference` and `dropped`; the rest (`validation`, `tokenization`,
`batch_size`, `model_type`, `missing_values`) are the client's. Counters keep their names (no `_total`).
The arms are told apart by the pod's target labels (`POD_SELECTOR`)."""

from __future__ import annotations

from canaryflow.kernel.contracts.providers.base import POD_SELECTOR, MetricProvider, Provenance, SignalQueries

PROVIDER = MetricProvider(
    name="tei",
    description="Text Embeddings Inference: te_request_duration, te_request_count, te_request_failure by err",
    signals={
        "latency": SignalQueries(
            histogram=f"sum by (le) (te_request_duration_bucket{{{POD_SELECTOR}}})",
            count=f"sum(te_request_duration_count{{{POD_SELECTOR}}})",
        ),
        "requests": SignalQueries(
            requests=f"sum(te_request_count{{{POD_SELECTOR}}})",
            errors=f'sum(te_request_failure{{{POD_SELECTOR},err=~"overloaded|inference|dropped"}})',
        ),
    },
    provenance=(
        Provenance(
            repo="huggingface/text-embeddings-inference",
            commit="0d124dc9773be6ac5a9a57d8439aba9bbbf33273",
            paths=("router/src/prometheus.rs", "router/src/lib.rs", "core/src/infer.rs"),
        ),
    ),
)
