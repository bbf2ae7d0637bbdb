"""The inference server's ASGI app, assembled from its route groups (`inference.http_front`):
`/v1/embeddings`, `/v1/models`, `/healthz`, `/ready`, `/metrics`.

Plain Starlette (what FastAPI is built on): a handful of fixed routes need no request-model
machinery, and each layer less is time per request at tens of thousands of requests per second.
Every refusal, including unknown routes and wrong methods, is answered in OpenAI's error shape
(`inference.openai_errors`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from canaryflow.kernel.contracts.routing import RoutingConfig
from inference.backend import EmbeddingBackend
from inference.engine_process import EngineClient
from inference.http_front.embeddings import EMBEDDINGS_PATH, embeddings_handler
from inference.http_front.front_context import JSON, FrontContext
from inference.http_front.model_list import model_routes
from inference.http_front.probes import probe_routes
from inference.metrics import ServerMetrics
from inference.openai_errors import ApiError, error_body
from inference.prediction_log import open_prediction_log
from inference.server import ModelLoader, ModelServer
from inference.server_settings import InferenceSettings
from inference.shadow import Shadow

log = logging.getLogger("canaryflow.inference")


def create_app(
    settings: InferenceSettings,
    routing: RoutingConfig | None = None,
    loader: ModelLoader | None = None,
    metrics: ServerMetrics | None = None,
    engine_socket: str | None = None,
) -> EmbeddingServer:
    """The ASGI app; models load (or the engine is reached) after start-up: `/ready` says when.

    With `engine_socket` the models live in the engine process behind that socket; otherwise here.
    """
    metrics = metrics or ServerMetrics()
    backend: EmbeddingBackend
    if engine_socket is not None:
        client = EngineClient(engine_socket, max_group_texts=settings.resolved_max_batch_size())
        backend, startup = client, client.start
    else:
        if routing is None and settings.routing_file is None:
            raise ValueError("routing: give a routing file or the versions to serve")
        server = ModelServer(settings, metrics, loader)
        backend, startup = server, functools.partial(server.start, routing)
    shadow = Shadow(backend, metrics, settings.shadow_max_in_flight)
    predictions = open_prediction_log(settings, metrics)  # None unless --prediction-log-rate > 0

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(startup())
        try:
            yield
        finally:
            task.cancel()
            shadow.cancel()
            await backend.close()
            if predictions is not None:
                predictions.close()

    front = FrontContext(settings, backend, metrics, routing.model if routing else "unknown")
    embeddings = embeddings_handler(front, shadow, predictions)
    routes = [
        Route(EMBEDDINGS_PATH, embeddings, methods=["POST"]),
        *model_routes(front),
        *probe_routes(front),
    ]
    handlers = {HTTPException: http_error, Exception: server_error}
    app = EmbeddingServer(routes=routes, lifespan=lifespan, exception_handlers=handlers)  # type: ignore[arg-type]
    app.embeddings = embeddings
    app.state.backend = backend
    return app


class EmbeddingServer(Starlette):
    """Starlette, with `POST /v1/embeddings` answered ahead of its middleware stack and router.

    The embeddings handler catches every error itself and answers in the OpenAI shape, so the error
    middlewares have nothing to do for it, and the router's matching, the request/response wrappers
    and the exception scopes are about a tenth of a single-sentence request's CPU. Every other path
    and method (and so the 404/405 answers) goes through the whole stack.
    """

    embeddings: Callable[[Request], Awaitable[Response]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == EMBEDDINGS_PATH and scope["method"] == "POST":
            response = await self.embeddings(Request(scope, receive))
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own refusals (no such route, wrong method) in the OpenAI error shape."""
    where = f"{request.method} {request.url.path}"
    reasons = {404: f"no such route: {where}", 405: f"method not allowed: {where}"}
    reason = reasons.get(exc.status_code, str(exc.detail))
    error = ApiError(exc.status_code, reason)
    return Response(error.body(), exc.status_code, headers=exc.headers, media_type=JSON)


async def server_error(_: Request, exc: Exception) -> Response:
    log.error("unhandled error: %r", exc)
    return Response(error_body(f"internal error: {type(exc).__name__}", "server_error"), 500, media_type=JSON)
