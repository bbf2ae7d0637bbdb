"""HTTP front of the inference server: `/v1/embeddings`, `/healthz`, `/ready`, `/metrics`.

Plain Starlette (what FastAPI is built on): four fixed routes need no request-model machinery, and
each layer less is time per request at tens of thousands of requests per second.

Handlers do no model work: they validate, route, queue the texts on the chosen version's batcher and
encode the answer, so the event loop stays free while tokenization and forward passes run in threads.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from canaryflow.kernel.contracts.routing import RoutingConfig
from inference.api import BadRequest, dumps, embeddings_body, error_body, parse_request
from inference.backend import EmbeddingBackend
from inference.batching import InputTooLong, QueueFull
from inference.engine import EngineClient
from inference.metrics import NO_VERSION, ServerMetrics
from inference.server import ModelLoader, ModelServer, UnknownVersion
from inference.settings import InferenceSettings
from inference.shadow import Shadow

log = logging.getLogger("canaryflow.inference")
JSON = "application/json"


def create_app(
    settings: InferenceSettings,
    routing: RoutingConfig | None = None,
    loader: ModelLoader | None = None,
    metrics: ServerMetrics | None = None,
    engine_socket: str | None = None,
) -> Starlette:
    """The ASGI app; models load (or the engine is reached) after start-up: `/ready` says when.

    With `engine_socket` the models live in the engine process behind that socket; otherwise here.
    """
    metrics = metrics or ServerMetrics()
    backend: EmbeddingBackend
    if engine_socket is not None:
        client = EngineClient(engine_socket)
        backend, startup = client, client.start
    else:
        if routing is None and settings.routing_file is None:
            raise ValueError("routing: give a routing file or the versions to serve")
        server = ModelServer(settings, metrics, loader)
        backend, startup = server, functools.partial(server.start, routing)
    shadow = Shadow(backend, metrics, settings.shadow_max_in_flight)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(startup())
        try:
            yield
        finally:
            task.cancel()
            shadow.cancel()
            await backend.close()

    m = metrics
    default_model = routing.model if routing else "unknown"

    def model_name() -> str:
        return backend.table.model if backend.table else default_model

    def is_ready() -> bool:
        table = backend.table
        return table is not None and all(v.version in backend.loaded for v in table.config.versions)

    def refuse(status: int, message: str, version: str, *, kind: str = "invalid_request_error",
               param: str | None = None, retry_after: int | None = None) -> Response:  # fmt: skip
        m.requests.labels(model_name(), version, str(status)).inc()
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
        table = backend.table
        if table is None or not is_ready():
            return refuse(503, "models are loading", NO_VERSION, kind="server_error", retry_after=2)
        name, _, pinned = parsed.model.partition("/")
        if name != table.model:
            message = f"model {parsed.model!r} is not served here (serving {table.model!r})"
            return refuse(404, message, NO_VERSION, param="model")
        version = pinned or table.choose(request.headers.get(table.config.sticky_header))
        if version not in backend.loaded:
            return refuse(
                404, f"model {name!r}: version {version} is not served here", NO_VERSION, param="model"
            )
        model = table.model
        try:
            result = await backend.embed(version, texts)
        except QueueFull as exc:
            m.queue_rejections.labels(model, version).inc()
            return refuse(429, f"overloaded: {exc}", version, kind="rate_limit_error", retry_after=1)
        except InputTooLong as exc:
            return refuse(400, str(exc), version, param="input")
        except UnknownVersion as exc:  # retired between routing and queueing: the caller may retry
            return refuse(503, str(exc), version, kind="server_error", retry_after=1)
        except Exception as exc:
            log.exception("embedding failed on version %s", version)
            return refuse(500, f"embedding failed: {type(exc).__name__}", version, kind="server_error")
        shadow.maybe_copy(version, texts, result)
        payload = embeddings_body(model, result.embeddings, result.tokens, parsed.encoding_format)
        m.queue_seconds.labels(model, version).observe(result.queue_s)
        m.request_duration.labels(model, version).observe(time.perf_counter() - started)
        m.requests.labels(model, version, "200").inc()
        return Response(payload, 200, headers={"X-Model-Version": version}, media_type=JSON)

    async def healthz(_: Request) -> Response:
        if backend.load_error:
            return Response(error_body(backend.load_error, "server_error"), 503, media_type=JSON)
        return Response(b'{"status":"ok"}', 200, media_type=JSON)

    async def ready(request: Request) -> Response:
        """`?version=N`: ready only once N is loaded *and* routed traffic, so a rollout's analysis
        never starts before the canary actually serves its share (the routing file may lag git)."""
        version = request.query_params.get("version")
        table = backend.table
        versions = {v.version: v.weight for v in table.config.versions} if table else {}
        ready_now = is_ready() and (
            version is None or (versions.get(version, 0) > 0 and version in backend.loaded)
        )
        body = {"ready": ready_now, "model": model_name() if table else None, "weights": versions,
                "loaded": sorted(backend.loaded), "error": backend.load_error}  # fmt: skip
        return Response(dumps(body), 200 if ready_now else 503, media_type=JSON)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(m.exposition(), 200, media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.backend = backend
    return app
