"""`POST /v1/embeddings`: admit a request, queue its tokens on the chosen version, answer in OpenAI's
format.

The handler does no model work: it admits (body limit, validation, routing, tokenizing, per-request
limits: `inference.admission`), queues the tokens on the chosen version's batcher and encodes the
answer, so the event loop stays free while forward passes run in threads. It catches every error
itself and answers in the OpenAI shape, which is what lets `assembly.EmbeddingServer` call it ahead of
Starlette's middleware and router.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response

from inference.admission import (
    ClientGone,
    TokenIdDecoder,
    check_dimensions,
    read_body,
    tokenize,
    wait_for_result,
)
from inference.api import Limits, embeddings_body, parse_request, shorten
from inference.batching import QueueFull
from inference.http_front.front_context import JSON, FrontContext
from inference.metrics import NO_VERSION
from inference.openai_errors import ApiError
from inference.prediction_log import PredictionLog
from inference.server import UnknownVersion
from inference.shadow import Shadow

log = logging.getLogger("canaryflow.inference")
EMBEDDINGS_PATH = "/v1/embeddings"
CLIENT_GONE = "499"  # status label (nginx's) of requests whose client left before the answer

Handler = Callable[[Request], Awaitable[Response]]


def embeddings_handler(front: FrontContext, shadow: Shadow, predictions: PredictionLog | None) -> Handler:
    """The handler, its settings and collaborators bound once (it runs tens of thousands of times a
    second: no lookups it can do without)."""
    settings, backend, m = front.settings, front.backend, front.metrics
    is_ready, refuse, model_name = front.is_ready, front.refuse, front.model_name
    limits = Limits(settings.max_inputs, settings.max_input_chars)
    decoder = TokenIdDecoder(settings.token_ids_encoding) if settings.token_ids_encoding else None

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

    return embeddings
