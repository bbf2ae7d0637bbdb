"""The interface every served model kind implements.

The batcher needs only three things from a model: tokenize many texts at once (off the event loop),
run forward passes over a chunk of similar-length inputs, and move its weights between the serving
device and host memory (for the LRU cache). Keeping it this small lets other model kinds (ONNX,
plain transformers) follow sentence-transformers without touching batching or routing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Tokens one graphed pass (a CUDA graph's replay, `cuda_graphs`) holds at most, rows x padded width:
# larger chunks run as several replays. The batcher holds a batch to one pass, and an engine front
# cuts its groups at one, so that a batch's passes run from as many threads at once.
PASS_TOKENS = 32768


@dataclass(frozen=True, slots=True)
class TokenizedBatch:
    """Token ids of many texts, packed: one flat array and each text's length.

    Packed arrays cross process boundaries as a few buffers and pad into a forward pass's input with
    one vectorised scatter; a list of lists would cost a Python step per token on each of those hops.
    """

    ids: np.ndarray  # int32: every text's tokens back to back
    lengths: np.ndarray  # int32: tokens per text
    type_ids: np.ndarray | None  # int32, aligned with ids; None when all zero (single-segment texts)
    truncated: np.ndarray  # bool per text: cut to fit the model

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum(self.lengths, dtype=np.int64) - self.lengths

    def take(self, rows: Sequence[int] | np.ndarray) -> TokenizedBatch:
        """The texts at `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        flat = _gather_index(self.starts[rows], lengths)
        type_ids = None if self.type_ids is None else self.type_ids[flat]
        return TokenizedBatch(self.ids[flat], lengths, type_ids, self.truncated[rows])

    @staticmethod
    def filled(rows: int, width: int, token: int) -> TokenizedBatch:
        """`rows` texts of `width` copies of `token`: warm-up and capture inputs of a set shape."""
        return TokenizedBatch(
            np.full(rows * width, token, dtype=np.int32),
            np.full(rows, width, dtype=np.int32),
            None,
            np.zeros(rows, dtype=bool),
        )

    @staticmethod
    def concat(parts: Sequence[TokenizedBatch]) -> TokenizedBatch:
        if len(parts) == 1:
            return parts[0]
        type_ids = None
        if any(p.type_ids is not None for p in parts):
            type_ids = np.concatenate(
                [p.type_ids if p.type_ids is not None else np.zeros_like(p.ids) for p in parts]
            )
        return TokenizedBatch(
            np.concatenate([p.ids for p in parts]),
            np.concatenate([p.lengths for p in parts]),
            type_ids,
            np.concatenate([p.truncated for p in parts]),
        )

    def pad_into(self, ids: np.ndarray, mask: np.ndarray, type_ids: np.ndarray | None, pad_id: int) -> None:
        """Write the texts as rows of the [rows >= len(self), width >= longest] input arrays.

        Rows past the last text get one unmasked pad token, so that a fixed-shape (graphed) pass
        computes finite numbers for them too.
        """
        width = ids.shape[1]
        inside = np.arange(width)[None, :] < self.lengths[:, None]
        n = len(self)
        ids[:] = pad_id
        mask[:] = 0
        ids[:n][inside] = self.ids
        mask[:n][inside] = 1
        mask[n:, 0] = 1
        if type_ids is not None:
            type_ids[:] = 0
            if self.type_ids is not None:
                type_ids[:n][inside] = self.type_ids


def _gather_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat positions of the segments [start, start + length) laid end to end."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    seg_starts = np.cumsum(lengths, dtype=np.int64) - lengths
    return np.repeat(starts - seg_starts, lengths) + np.arange(total, dtype=np.int64)


class EmbeddingModel(Protocol):
    dimension: int
    max_seq_length: int
    device: str
    # Padding tokens worth one extra forward pass: below this waste, chunks are merged.
    launch_cost_tokens: int
    # Tokens one forward pass holds at most (a CUDA graph's replay); None when passes are not cut.
    pass_tokens: int | None
    # Sizes the model was trained to be shortened to (Matryoshka); empty when it was not.
    matryoshka_dims: tuple[int, ...]

    def tokenize(self, texts: list[str]) -> TokenizedBatch:
        """Tokenize with truncation to max_seq_length; must release the GIL for the heavy part."""
        ...

    def tokenizer_spec(self) -> str:
        """The tokenizer serialised, so other processes tokenize exactly as `tokenize` does."""
        ...

    def embed(self, batch: TokenizedBatch) -> np.ndarray:
        """Forward over one chunk of similar-length texts; float32 [len(batch), dimension] on the host."""
        ...

    def device_bytes(self) -> int:
        """What residency on the serving device costs: the weights at the serving dtype and, where
        forward passes are replayed from CUDA graphs, the memory pool those graphs hold."""
        ...

    def is_resident(self) -> bool: ...

    def to_serving_device(self) -> None:
        """Bring weights back onto the serving device (no-op when already there)."""
        ...

    def to_host(self) -> None:
        """Move weights to host memory, freeing device memory (a model on a weight slot leaves the
        slot on the device, idle: `DeviceSlots`)."""
        ...

    def warm_up(self) -> None:
        """Run representative shapes once so the first real request pays no start-up cost."""
        ...


class DeviceSlots(Protocol):
    """Device memory that outlives a model's residency: the weight slots versions of one
    architecture take turns on (`inference.models.weight_slots.WeightSlots`). The cache counts idle
    slots in its budget and frees them to make room; models are members by identity."""

    def adopt(self, model: object) -> None:
        """Make `model` share slots if it can (its weights go to host memory: not resident)."""
        ...

    def idle_bytes(self) -> int:
        """Bytes of slots bound to no model and reserved for none."""
        ...

    def reserve(self, model: object) -> bool:
        """Keep an idle slot of `model`'s architecture for its next `to_serving_device`."""
        ...

    def unreserve(self, model: object) -> None: ...

    def idle_count(self) -> int:
        """Slots bound to no model, reserved for none and not being freed."""
        ...

    def detach_idle(self, over: int, count: int = 0) -> Callable[[], None]:
        """Mark least recently used idle slots of about `over` bytes, `count` at least, leaving;
        the call frees them."""
        ...

    def leave(self, model: object) -> None:
        """Forget a model removed from service (after its `to_host`)."""
        ...
