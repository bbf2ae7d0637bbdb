"""`GET /healthz` (the process is up and its models did not fail to load), `GET /ready` (every routed
version loaded; `?version=N`: N loaded and given traffic) and `GET /metrics` (Prometheus)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from inference.api import dumps
from inference.http_front.front_context import JSON, FrontContext
from inference.openai_errors import ApiError


def probe_routes(front: FrontContext) -> list[Route]:
    backend = front.backend

    async def healthz(_: Request) -> Response:
        if backend.load_error:
            return Response(ApiError(503, backend.load_error).body(), 503, media_type=JSON)
        return Response(b'{"status":"ok"}', 200, media_type=JSON)

    async def ready(request: Request) -> Response:
        """`?version=N`: ready only once N is loaded *and* routed traffic, so a rollout's analysis
        never starts before the canary actually serves its share (the routing file may lag git)."""
        version = request.query_params.get("version")
        table = backend.table
        versions = {v.version: v.weight for v in table.config.versions} if table else {}
        ready_now = front.is_ready() and (
            version is None or (versions.get(version, 0) > 0 and version in backend.loaded)
        )
        body = {"ready": ready_now, "model": front.model_name() if table else None, "weights": versions,
                "loaded": sorted(backend.loaded), "error": backend.load_error}  # fmt: skip
        return Response(dumps(body), 200 if ready_now else 503, media_type=JSON)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(front.metrics.exposition(), 200, media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
