"""`GET /v1/models` and `GET /v1/models/{id}` (OpenAI's models API): the served model, and each loaded
version as `name/N`, the id that pins a request to that version."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from inference.api import dumps
from inference.http_front.front_context import JSON, FrontContext
from inference.openai_errors import ApiError


def model_routes(front: FrontContext) -> list[Route]:
    backend = front.backend
    created = int(time.time())

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

    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
    ]
