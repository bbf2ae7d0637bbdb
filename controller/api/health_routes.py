"""`GET /healthz` (liveness) and `GET /metrics` (the controller's own Prometheus metrics)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from controller.api.api_context import ControllerContext


def health_routes(app: FastAPI, ctx: ControllerContext) -> None:
    metrics = ctx.metrics

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")
