"""The interface every served model kind implements.

The batcher needs only three things from a model: tokenize many texts at once (off the event loop),
run one padded forward pass over a chunk of similar-length inputs, and move its weights between the
serving device and host memory (for the LRU cache). Keeping it this small lets other model kinds
(ONNX, plain transformers) follow sentence-transformers without touching batching or routing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class TokenizedBatch:
    """Token ids per text (unpadded) and whether the text was cut to fit the model."""

    ids: list[list[int]]
    type_ids: list[list[int]]
    truncated: list[bool]

    @property
    def lengths(self) -> list[int]:
        return [len(i) for i in self.ids]

    def __len__(self) -> int:
        return len(self.ids)


class EmbeddingModel(Protocol):
    dimension: int
    max_seq_length: int
    device: str
    # Padding tokens worth one extra forward pass: below this waste, chunks are merged.
    launch_cost_tokens: int

    def tokenize(self, texts: list[str]) -> TokenizedBatch:
        """Tokenize with truncation to max_seq_length; must release the GIL for the heavy part."""
        ...

    def tokenizer_spec(self) -> str:
        """The tokenizer serialised, so other processes tokenize exactly as `tokenize` does."""
        ...

    def embed(self, ids: list[list[int]], type_ids: list[list[int]]) -> np.ndarray:
        """One forward pass over a chunk; returns float32 [len(ids), dimension] on the host."""
        ...

    def weight_bytes(self) -> int:
        """Bytes of weights at the serving dtype (what residency on the device costs)."""
        ...

    def is_resident(self) -> bool: ...

    def to_serving_device(self) -> None:
        """Bring weights back onto the serving device (no-op when already there)."""
        ...

    def to_host(self) -> None:
        """Move weights to host memory, freeing device memory."""
        ...

    def warm_up(self) -> None:
        """Run representative shapes once so the first real request pays no start-up cost."""
        ...
