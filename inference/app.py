"""HTTP front of the inference server: `/v1/embeddings`, `/v1/models`, `/healthz`, `/ready`, `/metrics`.

Plain Starlette (what FastAPI is built on): a handful of fixed routes need no request-model
machinery, and each layer less is time per request at tens of thousands of requests per second.

Handlers do no model work: they admit (body limit, validation, routing, tokenizing, per-request
limits: `admission.py`), queue the tokens on the chosen version's batcher and encode the answer, so
the event loop stays free while forward passes run in threads. Every refusal, including unknown
routes and wrong methods, is answered in OpenAI's error shape (`errors.py`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from canaryflow.kernel.contracts.routing import RoutingConfig
from inference.admission import (
    ClientGone,
    TokenIdDecoder,
    check_dimensions,
    read_body,
    tokenize,
    wait_for_result,
)
from inference.api import Limits, dumps, embeddings_body, parse_request, shorten
from inference.backend import EmbeddingBackend
from inference.batching import QueueFull
from inference.engine import EngineClient
from inference.errors import ApiError, error_body
from inference.metrics import NO_VERSION, ServerMetrics
from inference.prediction_log import open_prediction_log
from inference.server import ModelLoader, ModelServer, UnknownVersion
from inference.settings import InferenceSettings
from inference.shadow import Shadow

log = logging.getLogger("canaryflow.inference")
JSON = "application/json"
EMBEDDINGS_PATH = "/v1/embeddings"
CLIENT_GONE = "499"  # status label (nginx's) of requests whose client left before the answer


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
        client = EngineClient(engine_socket, max_group_texts=settings.max_batch_size)
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

    m = metrics
    default_model = routing.model if routing else "unknown"
    limits = Limits(settings.max_inputs, settings.max_input_chars)
    decoder = TokenIdDecoder(settings.token_ids_encoding) if settings.token_ids_encoding else None
    created = int(time.time())

    # Each served version's success-path metric children, looked up once: `labels()` validates and
    # locks on every call, 3.2 of the 8.5 µs the three updates took per request (multiprocess mode).
    success_metrics: dict[tuple[str, str], tuple[Histogram, Histogram, Counter]] = {}

    def observe_success(name: str, version: str, queue_s: float, duration_s: float) -> None:
        children = success_metrics.get((name, version))
        if children is None:
            children = success_metrics[(name, version)] = (
                m.queue_seconds.labels(name, version),
                m.request_duration.labels(name, version),
                m.requests.labels(name, version, "200"),
            )
        children[0].observe(queue_s)
        children[1].observe(duration_s)
        children[2].inc()

    def model_name() -> str:
        return backend.table.model if backend.table else default_model

    def is_ready() -> bool:
        table = backend.table
        return table is not None and all(v.version in backend.loaded for v in table.config.versions)

    def refuse(error: ApiError, version: str) -> Response:
        m.requests.labels(model_name(), version, str(error.status)).inc()
        headers = {"X-Model-Version": version, **error.headers()}
        return Response(error.body(), error.status, headers=headers, media_type=JSON)

    async def embeddings(request: Request) -> Response:
        started = time.perf_counter()
        version = NO_VERSION
        try:
            body = await read_body(request.receive, request.headers, settings.max_body_bytes)
            parsed, inputs = parse_request(body, limits)
            table = backend.table
            if table is None or not is_ready():
                raise ApiError(503, "models are loading", code="model_loading", retry_after=2)
            name, _, pinned = parsed.model.partition("/")
            if name != table.model:
                raise ApiError(404, f"model {parsed.model!r} is not served here (serving {table.model!r})",
                               param="model", code="model_not_found")  # fmt: skip
            chosen = pinned or table.choose(request.headers.get(table.config.sticky_header))
            info = backend.info(chosen)
            if info is None:
                raise ApiError(404, f"model {name!r}: version {chosen} is not served here",
                               param="model", code="model_not_found")  # fmt: skip
            version = chosen
            whose = f"model {name!r} version {version}"
            dimensions = check_dimensions(parsed.dimensions, info, whose)
            try:
                backend.check_room(version)
                tokens, texts = await tokenize(
                    inputs, info, whose, truncate=settings.truncate,
                    max_tokens=settings.max_request_tokens, decoder=decoder,
                )  # fmt: skip
                future = backend.submit(version, tokens)
                remaining = settings.request_timeout_s - (time.perf_counter() - started)
                # In engine mode the engine's queue refuses after the hop: through the future.
                result = await wait_for_result(future, request.receive, max(remaining, 0.001))
            except QueueFull as exc:
                m.queue_rejections.labels(name, version).inc()
                raise ApiError(429, f"overloaded: {exc}", retry_after=exc.retry_after_s) from None
            except UnknownVersion as exc:  # retired between routing and queueing: the caller may retry
                raise ApiError(503, str(exc), retry_after=1) from None
        except ApiError as exc:
            return refuse(exc, version)
        except ClientGone:
            m.requests.labels(model_name(), version, CLIENT_GONE).inc()
            return Response(b"", 400)  # never sent: the connection is gone
        except Exception as exc:
            log.exception("embedding failed on version %s", version)
            return refuse(ApiError(500, f"embedding failed: {type(exc).__name__}"), version)
        shadow.maybe_copy(version, tokens, texts, result)
        embeddings = result.embeddings if dimensions is None else shorten(result.embeddings, dimensions)
        payload = embeddings_body(parsed.model, embeddings, result.tokens, parsed.encoding_format)
        observe_success(name, version, result.queue_s, time.perf_counter() - started)
        if predictions is not None:  # a random draw and a queue put; the writing is on its own thread
            elapsed = time.perf_counter() - started
            predictions.maybe_record(name, version, elapsed, texts, result.embeddings, tokens.lengths)
        return Response(payload, 200, headers={"X-Model-Version": version}, media_type=JSON)

    def model_objects() -> list[dict[str, object]]:
        """The served model, and each loaded version as `name/N` (what pins a request to it)."""
        table = backend.table
        if table is None:
            return []
        ids = [table.model] + [f"{table.model}/{v.version}" for v in table.config.versions
                               if v.version in backend.loaded]  # fmt: skip
        return [{"id": i, "object": "model", "created": created, "owned_by": "canaryflow"} for i in ids]

    async def list_models(_: Request) -> Response:
        return Response(dumps({"object": "list", "data": model_objects()}), 200, media_type=JSON)

    async def get_model(request: Request) -> Response:
        wanted = request.path_params["model_id"]
        for model in model_objects():
            if model["id"] == wanted:
                return Response(dumps(model), 200, media_type=JSON)
        error = ApiError(404, f"model {wanted!r} is not served here", param="model", code="model_not_found")
        return Response(error.body(), 404, media_type=JSON)

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
        ready_now = is_ready() and (
            version is None or (versions.get(version, 0) > 0 and version in backend.loaded)
        )
        body = {"ready": ready_now, "model": model_name() if table else None, "weights": versions,
                "loaded": sorted(backend.loaded), "error": backend.load_error}  # fmt: skip
        return Response(dumps(body), 200 if ready_now else 503, media_type=JSON)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(m.exposition(), 200, media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route(EMBEDDINGS_PATH, embeddings, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
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
