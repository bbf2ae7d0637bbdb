"""What every route group of the HTTP front shares: the backend the models run behind, the server's
settings and metrics, and the few answers more than one group gives (the model's name, readiness, a
refusal in OpenAI's error shape)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import Response

from inference.backend import EmbeddingBackend
from inference.metrics import ServerMetrics
from inference.openai_errors import ApiError
from inference.server_settings import InferenceSettings

JSON = "application/json"


@dataclass(frozen=True)
class FrontContext:
    settings: InferenceSettings
    backend: EmbeddingBackend
    metrics: ServerMetrics
    default_model: str  # the routing's model until the backend has a table ("unknown" without one)

    def model_name(self) -> str:
        table = self.backend.table
        return table.model if table else self.default_model

    def is_ready(self) -> bool:
        table = self.backend.table
        return table is not None and all(v.version in self.backend.loaded for v in table.config.versions)

    def refuse(self, error: ApiError, version: str) -> Response:
        """The error answer of a request, counted under its version (`none` when it had none yet)."""
        self.metrics.requests.labels(self.model_name(), version, str(error.status)).inc()
        headers = {"X-Model-Version": version, **error.headers()}
        return Response(error.body(), error.status, headers=headers, media_type=JSON)
