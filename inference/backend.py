"""What the HTTP front needs from whatever runs the models.

Two implementations: `ModelServer` (models in this process; one-process servers and tests) and
`EngineClient` (models in a separate engine process that owns the GPU, shared by several HTTP
front processes). Routing, admission (tokenizing, limits), shadow copies and request metrics live in
the front, so they behave the same with either.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from inference.batching import EmbedResult
from inference.models.base import EmbeddingModel, TokenizedBatch
from inference.routing_table import RoutingTable
from inference.tokenization import TextTokenizer


@dataclass(frozen=True)
class VersionInfo:
    """What the front must know of a loaded version to admit a request for it."""

    tokenizer: TextTokenizer
    dimension: int
    max_seq_length: int
    # Dimensions the model was trained to be shortened to (Matryoshka); empty: only its full size.
    matryoshka_dims: tuple[int, ...]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @classmethod
    def of(cls, model: EmbeddingModel) -> VersionInfo:
        return cls(
            TextTokenizer(model.tokenizer_spec()),
            model.dimension,
            model.max_seq_length,
            tuple(model.matryoshka_dims),
        )

    def wire(self) -> dict[str, Any]:
        """Plain values, to send to a front process (which rebuilds the tokenizer from its spec)."""
        return {
            "spec": self.tokenizer.spec,
            "dimension": self.dimension,
            "max_seq_length": self.max_seq_length,
            "matryoshka_dims": list(self.matryoshka_dims),
        }

    @classmethod
    def from_wire(cls, doc: dict[str, Any], tokenizer: TextTokenizer | None = None) -> VersionInfo:
        return cls(
            tokenizer or TextTokenizer(doc["spec"]),
            int(doc["dimension"]),
            int(doc["max_seq_length"]),
            tuple(int(d) for d in doc["matryoshka_dims"]),
        )


class EmbeddingBackend(Protocol):
    table: RoutingTable | None
    load_error: str | None

    @property
    def loaded(self) -> set[str]:
        """Versions that can take requests now."""
        ...

    def info(self, version: str) -> VersionInfo | None:
        """The loaded version's tokenizer and sizes; None when it is not loaded."""
        ...

    def submit(self, version: str, tokens: TokenizedBatch) -> asyncio.Future[EmbedResult]:
        """Queue work on a version; raises UnknownVersion or QueueFull at once.

        The caller may cancel the future (deadline passed, client gone): work not yet started is
        dropped and its room in the queue freed at once.
        """
        ...

    def check_room(self, version: str) -> None:
        """Raise QueueFull when the version's queue is already full (cheap, before tokenizing)."""
        ...

    async def close(self) -> None: ...
