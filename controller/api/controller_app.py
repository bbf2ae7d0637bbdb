"""The controller's HTTP surface, assembled from its route groups.

| group | module |
| --- | --- |
| `POST /webhooks/<source>` (MLflow, Databricks, GitHub) | `webhook_routes.py` |
| `GET /rollouts`, `GET /rollouts/{id}` | `rollout_routes.py` |
| `GET /rollouts/{id}/notifications` | `notice_routes.py` |
| `GET /models/{name}/drift`, `PUT /models/{name}/drift/reference` (bearer token) | `drift_routes.py` |
| `GET /healthz`, `GET /metrics` | `health_routes.py` |

Every group takes the same `ControllerContext` (api_context.py): the parts the composition root
(`canaryflow.app.wiring`) built.
"""

from __future__ import annotations

from fastapi import FastAPI

from controller.api.api_context import ControllerContext
from controller.api.drift_routes import drift_routes
from controller.api.health_routes import health_routes
from controller.api.notice_routes import notice_routes
from controller.api.rollout_routes import rollout_routes
from controller.api.webhook_routes import webhook_routes

ROUTE_GROUPS = (webhook_routes, rollout_routes, notice_routes, drift_routes, health_routes)


def create_app(ctx: ControllerContext) -> FastAPI:
    app = FastAPI(title="canaryflow controller", version="0.1.0")
    for group in ROUTE_GROUPS:
        group(app, ctx)
    return app
