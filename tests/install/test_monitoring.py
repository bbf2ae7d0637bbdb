"""Dashboards and alert rules: the models round-trip through the SDK, every PromQL expression parses in
a real Prometheus, and every series they read is one the controller or the inference server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel

from canaryflow.adapters.notify import BackgroundNotifier
from canaryflow.adapters.notify.cloudevents_channel import CloudEventsChannel
from canaryflow.adapters.predictions import JsonlDirectoryReader
from canaryflow.app.install import InstallOptions
from canaryflow.app.install.alerts import expressions, prometheus_rule
from canaryflow.app.install.dashboards import dashboard_models, queries
from canaryflow.kernel.rollout import Started, StepStarted, apply
from controller.drift_monitor import DriftCollector, DriftMonitor
from controller.observability import ControllerMetrics, NoticeOutboxCollector
from controller.rollout.records import RolloutRecord, StepRecord
from controller.rollout.store import RolloutStore
from inference.metrics import ServerMetrics
from policies.drift_policy import DriftPolicy
from tests.drift.synthetic import Traffic

# Grafana's variables, as Grafana would substitute them before Prometheus sees the query.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$model": ".*"}
SERIES = re.compile(r"\b(canaryflow_[a-z_]+)")


def _all_queries() -> list[str]:
    found = [q for model in dashboard_models().values() for q in queries(model)]
    return found + expressions(prometheus_rule(InstallOptions()))


def _grafana(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_dashboards_round_trip_through_the_sdk_model() -> None:
    for name, model in dashboard_models().items():
        parsed = DashboardModel.from_json(model)
        again = JSONEncoder(sort_keys=True).encode(parsed)
        assert JSONEncoder(sort_keys=True).encode(DashboardModel.from_json(json.loads(again))) == again
        assert model["uid"] == name and model["panels"], name
        titles = [p["title"] for p in model["panels"] if p["type"] != "row"]
        assert len(titles) == len(set(titles)) >= 5, titles
        for panel in model["panels"]:
            if panel["type"] != "row":
                assert panel.get("description") and panel["targets"], panel["title"]


def _judged_drift_monitor(tmp_path: Path) -> DriftMonitor:
    """A drift monitor that has judged one window of champion v2 (reference, then a look)."""
    t0, now = 1_700_000_000.0, [0.0]
    champions = lambda: {"minilm": ("2", t0)}  # noqa: E731
    policy = DriftPolicy(window_s=60, reference_window_s=120)
    monitor = DriftMonitor(policy, JsonlDirectoryReader(tmp_path), champions, clock=lambda: now[0])
    log, traffic = tmp_path / "minilm" / f"predictions-{t0:.3f}-1.jsonl", Traffic(seed=1)
    for start, end in ((t0, t0 + 120), (t0 + 121, t0 + 180)):
        traffic.write(log, 300, t0=start, t1=end, version="2")
        now[0] = end + 1
        monitor.tick()
    return monitor


def _exported_series(tmp_path: Path) -> set[str]:
    """Sample names the real metric registries expose, with one active rollout and one request."""
    store = RolloutStore(tmp_path / "controller.db")
    record = RolloutRecord(
        id="minilm-v2-abc",
        model="minilm",
        baseline_version="1",
        canary_version="2",
        policy="default",
        environment="production",
        trigger="test:1",
        created_at=1.0,
        updated_at=1.0,
        reason="test",
    )
    store.create_rollout(record)
    change = apply(record.state, Started(workflow="wf"))
    store.transition(record.id, change, workflow="wf", started_at=2.0)
    record = store.get(record.id) or record
    store.transition(record.id, apply(record.state, StepStarted(index=0, weight=20)), weight=20)
    store.upsert_step(record.id, StepRecord(index=0, weight=20, status="pass"))
    controller = ControllerMetrics(store, lambda _policy: 3600.0)
    controller.webhooks_received.labels("mlflow").inc()
    controller.webhooks_rejected.labels("mlflow", "401").inc()
    controller.decision_latency.labels("rolled_back").observe(30)
    controller.reconcile_seconds.observe(0.01)
    server = ServerMetrics()
    labels = ("minilm", "2")
    for metric in (server.request_duration, server.batch_size, server.queue_seconds):
        metric.labels(*labels).observe(0.01)
    for counter in (server.tokens, server.padded_tokens, server.queue_rejections):
        counter.labels(*labels).inc()
    server.requests.labels(*labels, "200").inc()
    server.gpu_memory.labels(*labels, "cpu").set(1.0)
    server.routing_weight.labels(*labels).set(20)
    server.prediction_log_dropped.labels(*labels).inc()
    controller.registry.register(DriftCollector(_judged_drift_monitor(tmp_path)))
    notifier = BackgroundNotifier([CloudEventsChannel("http://127.0.0.1:9")])  # sends nothing here
    controller.registry.register(NoticeOutboxCollector(notifier))
    text = (controller.exposition() + server.exposition()).decode()
    notifier.close(1)
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }


def test_every_series_read_is_exported(tmp_path: Path) -> None:
    exported = _exported_series(tmp_path)
    assert "canaryflow_controller_rollout_deadline_seconds" in exported
    assert "canaryflow_controller_steps" in exported
    for expr in _all_queries():
        for series in SERIES.findall(expr):
            assert series in exported, f"{series} (in {expr!r}) is not exported"


@pytest.mark.prometheus
def test_every_expression_parses_in_prometheus(prometheus_server: Any) -> None:
    server = prometheus_server([])
    with httpx.Client(base_url=server.url, timeout=10) as client:
        bad = client.get("/api/v1/query", params={"query": "sum by (le (rate(x[5m]))"})
        assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"
        for expr in _all_queries():
            answer = client.get("/api/v1/query", params={"query": _grafana(expr)})
            assert answer.status_code == 200, f"{expr}: {answer.text}"
            assert answer.json()["status"] == "success"


def test_alert_rules_say_what_happened() -> None:
    rule: dict[str, Any] = prometheus_rule(InstallOptions())
    names = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {
        "CanaryflowRolloutStuck",
        "CanaryflowRolloutRolledBack",
        "CanaryflowWebhookSignatureFailures",
    } <= set(names)
    assert {"CanaryflowInferenceShedding", "CanaryflowInferenceQueueSaturated"} <= set(names)
    for group in rule["spec"]["groups"]:
        for entry in group["rules"]:
            assert entry["labels"]["severity"] in ("warning", "critical")
            assert entry["annotations"]["summary"] and entry["annotations"]["description"]
