"""Alert rules as code: a PrometheusRule built from the metric contract, so a renamed metric fails here.

Each rule says in its annotations what happened and what to look at first; docs/observability.md
describes them in words. Thresholds are the ones an on-call person can act on: a rollback is worth a
look every time, a webhook signature failure now and then is noise (a misconfigured sender retries),
a steady stream is an attack or a rotated secret.
"""

from __future__ import annotations

from typing import Any

from canaryflow.app.install.options import CONTROLLER, PART_OF, InstallOptions
from canaryflow.kernel.contracts import metrics as m
from canaryflow.kernel.contracts.phases import RolloutPhase

RULE_NAME = "canaryflow"
# How long past its deadline an active rollout may stay before someone is paged: the controller times a
# rollout out at its policy's max duration by itself, so this only fires when the controller cannot.
STUCK_GRACE_S = 600


def _rule(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_ != "0m":
        rule["for"] = for_
    rule["labels"] = {"severity": severity, "component": "canaryflow"}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


def rollout_rules() -> list[dict[str, Any]]:
    decisions = f"{m.CONTROLLER_DECISION_LATENCY}_count"
    return [
        _rule(
            "CanaryflowRolloutStuck",
            f"time() - max by (rollout, model, state) ({m.CONTROLLER_ROLLOUT_DEADLINE}) > {STUCK_GRACE_S}",
            "5m",
            "critical",
            "Rollout {{ $labels.rollout }} is past its max duration and still {{ $labels.state }}",
            "The controller should have timed it out and rolled it back. Check the controller's log "
            "and the rollout's workflow (`canaryflow controller rollouts {{ $labels.rollout }}`).",
        ),
        _rule(
            "CanaryflowRolloutRolledBack",
            f'sum by (namespace) (increase({decisions}{{state="{RolloutPhase.ROLLED_BACK}"}}[15m])) > 0',
            "0m",
            "warning",
            "A canary was rolled back",
            "The analysis found the canary worse than its baseline, or the approval was rejected, or "
            "the rollout timed out; the rollout's report says which metric and why.",
        ),
        _rule(
            "CanaryflowRolloutFailed",
            f'sum by (namespace) (increase({decisions}{{state="{RolloutPhase.FAILED}"}}[15m])) > 0',
            "0m",
            "critical",
            "A rollout failed: neither promoted nor cleanly rolled back",
            "Its workflow ended in error; the GitOps repo may hold the canary. Look at the workflow "
            "and restore the stable state (`canaryflow gitops rollback`).",
        ),
        _rule(
            "CanaryflowWebhookSignatureFailures",
            "sum by (source) (increase("
            f'{m.counter_sample(m.CONTROLLER_WEBHOOKS_REJECTED)}{{status="401"}}[10m])) > 5',
            "0m",
            "warning",
            "{{ $labels.source }} webhook deliveries fail their signature check",
            "More than 5 deliveries in 10 minutes were refused with 401: the sender's secret and the "
            "controller's differ (a rotated secret?) or someone is sending forged events.",
        ),
        _rule(
            "CanaryflowNotificationOutboxOff",
            f"min by (namespace) ({m.CONTROLLER_NOTICE_OUTBOX_DURABLE}) == 0",
            "0m",
            "warning",
            "Rollout notices are held in memory only: the controller's outbox is unusable",
            "A controller restart now loses the notices still queued (a receiver being down). The log "
            "line `notification outbox unusable` names the file and the error (disk full, corrupt, from "
            "a newer canaryflow, a directory in its place); fix it and restart the controller.",
        ),
        _rule(
            "CanaryflowControllerDown",
            f'up{{job="{CONTROLLER}"}} == 0',
            "5m",
            "critical",
            "The canaryflow controller is not answering its scrape",
            "No webhook is received and no rollout moves while it is down. Check the pod's events.",
        ),
    ]


def inference_rules() -> list[dict[str, Any]]:
    queue_p95 = f"histogram_quantile(0.95, sum by (le, model, version) (rate({m.QUEUE_SECONDS}_bucket[5m])))"
    return [
        _rule(
            "CanaryflowInferenceShedding",
            f"sum by (model, version) (rate({m.counter_sample(m.QUEUE_REJECTIONS)}[5m])) > 0",
            "5m",
            "warning",
            "{{ $labels.model }} v{{ $labels.version }} refuses requests: its queue is full",
            "The server sheds load (HTTP 503). Add replicas or lower the batch wait; a canary "
            "shedding load fails its error-rate check.",
        ),
        _rule(
            "CanaryflowInferenceQueueSaturated",
            f"{queue_p95} > 0.25",
            "10m",
            "warning",
            "{{ $labels.model }} v{{ $labels.version }}: requests wait over 250 ms before their batch",
            "The device is busy for longer than requests arrive; latency grows before requests are shed.",
        ),
    ]


def drift_rules() -> list[dict[str, Any]]:
    dropped = m.counter_sample(m.PREDICTION_LOG_DROPPED)
    return [
        _rule(
            "CanaryflowChampionDrifting",
            f"max by (model, version) ({m.DRIFT_DETECTED}) == 1",
            "0m",
            "warning",
            "{{ $labels.model }} v{{ $labels.version }}: its traffic drifted from its reference",
            "The drift monitor's checks (held to their monthly false-alarm budget) found the inputs "
            "changed since the version became champion; `GET /models/{{ $labels.model }}/drift` names "
            "the checks. The embeddings may no longer match what the downstream index expects.",
        ),
        _rule(
            "CanaryflowPredictionLogDropping",
            f"sum by (model, version) (rate({dropped}[15m])) > 0",
            "15m",
            "warning",
            "{{ $labels.model }} v{{ $labels.version }}: the prediction log drops samples",
            "Its writer cannot keep up (slow disk, rate too high): the drift monitor sees fewer records. "
            "Lower --prediction-log-rate or give the log a faster volume.",
        ),
    ]


def prometheus_rule(options: InstallOptions) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": RULE_NAME,
            "namespace": options.namespace,
            "labels": {**PART_OF, **options.monitor_labels},
        },
        "spec": {
            "groups": [
                {"name": "canaryflow.rollouts", "rules": rollout_rules()},
                {"name": "canaryflow.inference", "rules": inference_rules()},
                {"name": "canaryflow.drift", "rules": drift_rules()},
            ]
        },
    }


def expressions(rule: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a PrometheusRule (what the tests hand to a real Prometheus)."""
    return [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
