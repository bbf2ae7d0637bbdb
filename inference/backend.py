"""What the HTTP front needs from whatever runs the models.

Two implementations: `ModelServer` (models in this process; one-process servers and tests) and
`EngineClient` (models in a separate engine process that owns the GPU, shared by several HTTP
front processes). Routing, shadow copies and request metrics live in the front, so they behave
the same with either.
"""

from __future__ import annotations

import asyncio
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

    def submit(self, version: str, texts: list[str]) -> asyncio.Future[EmbedResult]:
        """Queue texts; raises UnknownVersion or QueueFull at once, InputTooLong via the future."""
        ...

    async def close(self) -> None: ...
