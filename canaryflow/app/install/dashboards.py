"""Grafana dashboards as code (grafana-foundation-sdk), every query built from the metric contract.

Two dashboards: `canaryflow-rollouts` (the controller: rollouts by state, the step and deadline of
each active rollout, decisions and their times, webhooks) and `canaryflow-inference` (the server, per
model version: traffic weight, requests, errors, latency, batches, queue, device memory). Renaming a
metric in `canaryflow.kernel.contracts.metrics` changes the queries here, and a removed name fails the
import; docs/observability.md describes each panel in words.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as TimeSeries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from canaryflow.app.install.options import PART_OF, InstallOptions
from canaryflow.kernel.contracts import metrics as m
from canaryflow.kernel.rollout import ACTIVE

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
MODEL = '{model=~"$model"}'
ACTIVE_PHASES = "|".join(sorted(ACTIVE))


def _query(expr: str, legend: str, ref: str = "A") -> Dataquery:
    return Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def _series(title: str, unit: str, description: str, *queries: Dataquery, span: int = 12) -> TimeSeries:
    panel = TimeSeries().title(title).unit(unit).description(description).span(span).height(8)
    panel = panel.datasource(DATASOURCE)
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _quantile(q: float, family: str, by: str, selector: str = "") -> str:
    groups = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({groups}) (rate({family}_bucket{selector}[{RATE}])))"


def _variables(board: Dashboard, model_source: str) -> Dashboard:
    return board.with_variable(
        DatasourceVariable("datasource").label("Prometheus").type("prometheus")
    ).with_variable(
        QueryVariable("model")
        .label("Model")
        .datasource(DATASOURCE)
        .query(f"label_values({model_source}, model)")
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def rollouts_dashboard() -> Dashboard:
    decisions = f"{m.CONTROLLER_DECISION_LATENCY}_count"
    board = Dashboard("canaryflow: rollouts").uid("canaryflow-rollouts").tags(["canaryflow"]).refresh("30s")
    board = _variables(board.time("now-6h", "now"), m.CONTROLLER_ROLLOUT_STEP)
    return (
        board.with_row(Row("Rollouts now"))
        .with_panel(
            Stat()
            .title("Active rollouts")
            .description("Rollouts not yet promoted, rolled back, superseded or failed.")
            .datasource(DATASOURCE)
            .span(6)
            .height(6)
            .with_target(_query(f'sum({m.CONTROLLER_ROLLOUTS}{{state=~"{ACTIVE_PHASES}"}})', "active"))
        )
        .with_panel(
            _series(
                "Rollouts by state",
                "short",
                "How many rollouts the controller's store holds in each state.",
                _query(f"sum by (state) ({m.CONTROLLER_ROLLOUTS})", "{{state}}"),
                span=18,
            )
        )
        .with_panel(
            _series(
                "Step of each active rollout",
                "short",
                "The traffic step (1-based) each active rollout has reached, by model and state.",
                _query(
                    f"max by (rollout, model, state) ({m.CONTROLLER_ROLLOUT_STEP}{MODEL})",
                    "{{rollout}} {{state}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Time left before max duration",
                "s",
                "Seconds until each active rollout reaches its policy's max duration "
                "(then the controller rolls it back).",
                _query(
                    f"max by (rollout, model) ({m.CONTROLLER_ROLLOUT_DEADLINE}{MODEL}) - time()",
                    "{{rollout}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Step verdicts per model",
                "short",
                "Traffic steps recorded, by model and verdict: pass (the canary held up at that weight), "
                "fail (the step that rolled it back), running.",
                _query(f"sum by (model, status) ({m.CONTROLLER_STEPS}{MODEL})", "{{model}} {{status}}"),
            )
        )
        .with_row(Row("Decisions"))
        .with_panel(
            _series(
                "Decisions by outcome",
                "short",
                "Rollouts that reached a final state in each interval: "
                "promoted, rolled_back, superseded, failed.",
                _query(f"sum by (state) (increase({decisions}[{RATE}]))", "{{state}}"),
            )
        )
        .with_panel(
            _series(
                "Decision time (event to final state)",
                "s",
                "Median and 95th percentile of the time from the registry event to the final state, "
                "by outcome.",
                _query(_quantile(0.5, m.CONTROLLER_DECISION_LATENCY, "state"), "p50 {{state}}"),
                _query(_quantile(0.95, m.CONTROLLER_DECISION_LATENCY, "state"), "p95 {{state}}", "B"),
            )
        )
        .with_row(Row("Webhooks and the loop"))
        .with_panel(
            _series(
                "Webhook deliveries",
                "reqps",
                "Deliveries received per second by source, and those refused by HTTP status "
                "(401: bad signature).",
                _query(
                    f"sum by (source) (rate({m.counter_sample(m.CONTROLLER_WEBHOOKS_RECEIVED)}[{RATE}]))",
                    "{{source}}",
                ),
                _query(
                    f"sum by (source, status) "
                    f"(rate({m.counter_sample(m.CONTROLLER_WEBHOOKS_REJECTED)}[{RATE}]))",
                    "refused {{source}} {{status}}",
                    "B",
                ),
            )
        )
        .with_panel(
            _series(
                "Reconcile time",
                "s",
                "99th percentile of the time to reconcile one rollout once (engine calls included).",
                _query(
                    _quantile(0.99, m.CONTROLLER_RECONCILE_SECONDS, ""),
                    "p99",
                ),
            )
        )
    )


def inference_dashboard() -> Dashboard:
    mv = "model, version"
    legend = "{{model}} v{{version}}"
    board = Dashboard("canaryflow: inference").uid("canaryflow-inference").tags(["canaryflow"]).refresh("30s")
    board = _variables(board.time("now-3h", "now"), m.counter_sample(m.REQUESTS))
    requests = m.counter_sample(m.REQUESTS)
    return (
        board.with_row(Row("Traffic"))
        .with_panel(
            _series(
                "Traffic weight per version",
                "percent",
                "The routing weight each version has now: the canary's steps show as a staircase.",
                _query(f"max by ({mv}) ({m.ROUTING_WEIGHT}{MODEL})", legend),
            )
        )
        .with_panel(
            _series(
                "Requests per version",
                "reqps",
                "Requests served per second by each version.",
                _query(f"sum by ({mv}) (rate({requests}{MODEL}[{RATE}]))", legend),
            )
        )
        .with_panel(
            _series(
                "Error ratio per version",
                "percentunit",
                "Share of requests answered with a 5xx status, per version.",
                _query(
                    f'sum by ({mv}) (rate({requests}{{model=~"$model", code=~"5.."}}[{RATE}])) '
                    f"/ sum by ({mv}) (rate({requests}{MODEL}[{RATE}]))",
                    legend,
                ),
            )
        )
        .with_panel(
            _series(
                "Latency per version",
                "s",
                "Median and 95th percentile of the whole request inside the server, per version.",
                _query(_quantile(0.5, m.REQUEST_DURATION, mv, MODEL), f"p50 {legend}"),
                _query(_quantile(0.95, m.REQUEST_DURATION, mv, MODEL), f"p95 {legend}", "B"),
            )
        )
        .with_row(Row("Batching and the device"))
        .with_panel(
            _series(
                "Batch size",
                "short",
                "Mean texts per dispatched batch, and the 95th percentile, per version.",
                _query(
                    f"sum by ({mv}) (rate({m.BATCH_SIZE}_sum{MODEL}[{RATE}])) "
                    f"/ sum by ({mv}) (rate({m.BATCH_SIZE}_count{MODEL}[{RATE}]))",
                    f"mean {legend}",
                ),
                _query(_quantile(0.95, m.BATCH_SIZE, mv, MODEL), f"p95 {legend}", "B"),
            )
        )
        .with_panel(
            _series(
                "Queue wait and shed requests",
                "s",
                "95th percentile of the wait before a request's batch is dispatched; requests refused "
                "because the queue was full, per second.",
                _query(_quantile(0.95, m.QUEUE_SECONDS, mv, MODEL), f"wait p95 {legend}"),
                _query(
                    f"sum by ({mv}) (rate({m.counter_sample(m.QUEUE_REJECTIONS)}{MODEL}[{RATE}]))",
                    f"shed/s {legend}",
                    "B",
                ),
            )
        )
        .with_panel(
            _series(
                "Device memory per version",
                "bytes",
                "Weights resident on the serving device (GPU memory; host bytes on a CPU server).",
                _query(f"sum by ({mv}, device) ({m.GPU_MEMORY}{MODEL})", f"{legend} {{{{device}}}}"),
            )
        )
        .with_panel(
            _series(
                "Padding overhead",
                "percentunit",
                "Share of computed tokens that were padding (1 - tokens / padded tokens), per version.",
                _query(
                    f"1 - sum by ({mv}) (rate({m.counter_sample(m.TOKENS)}{MODEL}[{RATE}])) "
                    f"/ sum by ({mv}) (rate({m.counter_sample(m.PADDED_TOKENS)}{MODEL}[{RATE}]))",
                    legend,
                ),
            )
        )
    )


DASHBOARDS = {"canaryflow-rollouts": rollouts_dashboard, "canaryflow-inference": inference_dashboard}


def dashboard_json(name: str) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(DASHBOARDS[name]().build()) + "\n"


def dashboard_models() -> dict[str, dict[str, Any]]:
    """Name -> the dashboard's JSON model (what Grafana imports)."""
    return {name: json.loads(dashboard_json(name)) for name in DASHBOARDS}


def dashboard_config_maps(options: InstallOptions) -> list[dict[str, Any]]:
    """The dashboards as ConfigMaps labelled for Grafana's dashboard sidecar (kube-prometheus-stack)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{name}-dashboard",
                "namespace": options.namespace,
                "labels": {**PART_OF, "grafana_dashboard": "1"},
            },
            "data": {f"{name}.json": dashboard_json(name)},
        }
        for name in DASHBOARDS
    ]


def queries(model: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard model's panels (variables use Grafana's `label_values`)."""
    return [t["expr"] for p in model.get("panels", []) for t in p.get("targets") or [] if "expr" in t]
