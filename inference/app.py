"""HTTP front of the inference server: `/v1/embeddings`, `/healthz`, `/ready`, `/metrics`.

Plain Starlette (what FastAPI is built on): four fixed routes need no request-model machinery, and
each layer less is time per request at tens of thousands of requests per second.

Handlers do no model work: they validate, route, queue the texts on the chosen version's batcher and
encode the answer, so the event loop stays free while tokenization and forward passes run in threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from canaryflow.core.routing import RoutingConfig
from inference.api import BadRequest, dumps, embeddings_body, error_body, parse_request
from inference.batching import InputTooLong, QueueFull
from inference.metrics import NO_VERSION, ServerMetrics
from inference.server import ModelLoader, ModelServer, UnknownModel, read_routing_file
from inference.settings import InferenceSettings

log = logging.getLogger("canaryflow.inference")
JSON = "application/json"


def create_app(
    settings: InferenceSettings,
    routing: RoutingConfig | None = None,
    loader: ModelLoader | None = None,
    metrics: ServerMetrics | None = None,
) -> Starlette:
    """The ASGI app; versions load in the background after start-up (`/ready` says when)."""
    if routing is None and settings.routing_file is None:
        raise ValueError("routing: give a routing file or the versions to serve")
    server = ModelServer(settings, metrics, loader)
    state: dict[str, str | None] = {"load_error": None}

    async def initial_load() -> None:
        try:
            config = routing or read_routing_file(settings.routing_file)  # type: ignore[arg-type]
            await server.apply(config)
        except Exception as exc:
            state["load_error"] = f"{type(exc).__name__}: {exc}"
            log.exception("initial load failed")
            return
        if settings.routing_file is not None:
            server.watch(settings.routing_file)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(initial_load())
        try:
            yield
        finally:
            task.cancel()
            await server.close()

    m = server.metrics
    default_model = routing.model if routing else "unknown"

    def refuse(status: int, message: str, version: str, *, kind: str = "invalid_request_error",
               param: str | None = None, retry_after: int | None = None) -> Response:  # fmt: skip
        m.requests.labels(server.model_name or default_model, version, str(status)).inc()
        headers = {"X-Model-Version": version}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return Response(error_body(message, kind, param), status, headers=headers, media_type=JSON)

    async def embeddings(request: Request) -> Response:
        started = time.perf_counter()
        body = await request.body()
        try:
            parsed, texts = parse_request(body, settings.max_inputs, settings.max_input_chars)
        except BadRequest as exc:
            return refuse(400, str(exc), NO_VERSION, param=exc.param)
        if not server.ready():
            return refuse(503, "models are loading", NO_VERSION, kind="server_error", retry_after=2)
        try:
            runtime = server.route(parsed.model, request.headers.get(server.table.config.sticky_header))  # type: ignore[union-attr]
        except UnknownModel as exc:
            return refuse(404, str(exc), NO_VERSION, param="model")
        version = runtime.version
        model = server.model_name
        try:
            result = await runtime.batcher.submit(texts)
        except QueueFull as exc:
            m.queue_rejections.labels(model, version).inc()
            return refuse(429, f"overloaded: {exc}", version, kind="rate_limit_error", retry_after=1)
        except InputTooLong as exc:
            return refuse(400, str(exc), version, param="input")
        except Exception as exc:
            log.exception("embedding failed on version %s", version)
            return refuse(500, f"embedding failed: {type(exc).__name__}", version, kind="server_error")
        server.maybe_shadow(version, texts, result)
        payload = embeddings_body(model, result.embeddings, result.tokens, parsed.encoding_format)
        m.queue_seconds.labels(model, version).observe(result.queue_s)
        m.request_duration.labels(model, version).observe(time.perf_counter() - started)
        m.requests.labels(model, version, "200").inc()
        return Response(payload, 200, headers={"X-Model-Version": version}, media_type=JSON)

    async def healthz(_: Request) -> Response:
        if state["load_error"]:
            return Response(error_body(state["load_error"], "server_error"), 503, media_type=JSON)
        return Response(b'{"status":"ok"}', 200, media_type=JSON)

    async def ready(request: Request) -> Response:
        """`?version=N`: ready only once N is loaded *and* routed traffic, so a rollout's analysis
        never starts before the canary actually serves its share (the routing file may lag git)."""
        version = request.query_params.get("version")
        table = server.table
        versions = {v.version: v.weight for v in table.config.versions} if table else {}
        is_ready = server.ready() and (
            version is None or (versions.get(version, 0) > 0 and version in server.runtimes)
        )
        body = {"ready": is_ready, "model": server.model_name, "weights": versions,
                "loaded": sorted(server.runtimes), "error": state["load_error"]}  # fmt: skip
        return Response(dumps(body), 200 if is_ready else 503, media_type=JSON)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(m.exposition(), 200, media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return app
