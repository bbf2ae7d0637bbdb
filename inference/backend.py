"""What the HTTP front needs from whatever runs the models.

Two implementations: `ModelServer` (models in this process; one-process servers and tests) and
`EngineClient` (models in a separate engine process that owns the GPU, shared by several HTTP
front processes). Routing, shadow copies and request metrics live in the front, so they behave
the same with either.
"""

from __future__ import annotations

from typing import Protocol

from inference.batching import EmbedResult
from inference.router import RoutingTable


class EmbeddingBackend(Protocol):
    table: RoutingTable | None
    load_error: str | None

    @property
    def loaded(self) -> set[str]:
        """Versions that can take requests now."""
        ...

    async def embed(self, version: str, texts: list[str]) -> EmbedResult:
        """Embed on a version; raises UnknownVersion, QueueFull, InputTooLong or a server error."""
        ...

    async def close(self) -> None: ...
