"""Metric names and labels: the contract between the inference server, the controller's metrics
backends, its own /metrics, and the dashboards and alerts rendered from them.

The server exports these families; the analysis reads them back through Prometheus or a direct scrape.
A counter family `X` is exposed as the sample `X_total` (prometheus_client's convention), histograms
as `X_bucket` / `X_count` / `X_sum`.
"""

from __future__ import annotations

# Labels every inference series carries, and the version of requests refused before one was chosen.
MODEL_LABEL = "model"
VERSION_LABEL = "version"
CODE_LABEL = "code"
DEVICE_LABEL = "device"
BASELINE_LABEL = "baseline"
OUTCOME_LABEL = "outcome"
NO_VERSION = "none"


# Inference server families.
REQUEST_DURATION = "canaryflow_request_duration_seconds"  # histogram, LATENCY_BUCKETS_S
REQUESTS = "canaryflow_requests"  # counter, by code
GPU_MEMORY = "canaryflow_gpu_memory_bytes"  # gauge, by device
SHADOW_DISTANCE = "canaryflow_shadow_cosine_distance"  # histogram, by baseline
SHADOW_REQUESTS = "canaryflow_shadow_requests"  # counter, by outcome
BATCH_SIZE = "canaryflow_batch_size"
FORWARD_PASSES = "canaryflow_forward_passes"
QUEUE_SECONDS = "canaryflow_queue_seconds"
TOKENS = "canaryflow_tokens"
PADDED_TOKENS = "canaryflow_padded_tokens"
MODEL_LOADS = "canaryflow_model_loads"
MODEL_EVICTIONS = "canaryflow_model_evictions"
# CUDA graphs captured by the serving process, every model and lane (no labels; single-process only).
GRAPH_CAPTURES = "canaryflow_graph_captures"
# What the server's memory budget counts now, read from its model cache at each scrape (no model or
# version labels; single-process only): the versions whose weights are on the device, and the device
# bytes held by them (weights and, on weight slots, the slot's graph pools as they are now) and by
# idle weight slots, by holder.
HOLDER_LABEL = "holder"
CACHE_RESIDENT_VERSIONS = "canaryflow_cache_resident_versions"  # gauge
CACHE_DEVICE_BYTES = "canaryflow_cache_device_bytes"  # gauge, by holder (versions, idle_slots)
ROUTING_WEIGHT = "canaryflow_routing_weight"
ROUTING_RELOADS = "canaryflow_routing_reloads"
QUEUE_REJECTIONS = "canaryflow_queue_rejections"
PREDICTION_LOG_DROPPED = "canaryflow_prediction_log_dropped"  # counter: samples lost to a full queue
PREDICTION_LOG_WRITTEN = "canaryflow_prediction_log_written"  # counter: records written

# Controller families.
CONTROLLER_ROLLOUTS = "canaryflow_controller_rollouts"
CONTROLLER_WEBHOOKS_RECEIVED = "canaryflow_controller_webhooks_received"
CONTROLLER_WEBHOOKS_REJECTED = "canaryflow_controller_webhooks_rejected"
CONTROLLER_WEBHOOKS_DUPLICATE = "canaryflow_controller_webhooks_duplicate"
CONTROLLER_DECISION_LATENCY = "canaryflow_controller_decision_latency_seconds"
CONTROLLER_RECONCILE_SECONDS = "canaryflow_controller_reconcile_seconds"
# Per active rollout (labels rollout, model, state): the traffic step reached (1-based, 0 before the
# first), and the unix time at which its policy's max duration runs out (absent before it started).
CONTROLLER_ROLLOUT_STEP = "canaryflow_controller_rollout_step"
CONTROLLER_ROLLOUT_DEADLINE = "canaryflow_controller_rollout_deadline_seconds"
# Traffic steps recorded in the store, by model and status (pass, fail, running): the step verdicts.
CONTROLLER_STEPS = "canaryflow_controller_steps"
CONTROLLER_WAITING_ON_DEPENDENCY = "canaryflow_controller_waiting_on_dependency"
CONTROLLER_DEPENDENCY_ERRORS = "canaryflow_controller_dependency_errors"
# The notifier's outbox (present only when a notification channel is configured): 1 while every queued
# notice is written to it first, 0 once it is unusable (corrupt, newer, not a file, disk full) and
# notices live in memory only until a restart; and the notices queued so far held in memory only.
CHANNEL_LABEL = "channel"
CONTROLLER_NOTICE_OUTBOX_DURABLE = "canaryflow_controller_notice_outbox_durable"  # gauge
CONTROLLER_NOTICES_MEMORY_ONLY = "canaryflow_controller_notices_memory_only"  # counter, by channel

# Controller drift-monitor families (model, version; statistic and threshold also by check).
CHECK_LABEL = "check"
DRIFT_DETECTED = "canaryflow_drift_detected"  # gauge: 1 while the champion drifts
DRIFT_STATISTIC = "canaryflow_drift_statistic"  # gauge, by check
DRIFT_THRESHOLD = "canaryflow_drift_threshold"  # gauge, by check
DRIFT_WINDOW_SAMPLES = "canaryflow_drift_window_samples"  # gauge
DRIFT_EVALUATIONS = "canaryflow_drift_evaluations"  # counter, by outcome (drift, no_drift, no_data)


def counter_sample(family: str) -> str:
    """The sample name a counter family is exposed under."""
    return f"{family}_total"
