"""sentence-transformers models served without `model.encode`.

`encode` tokenizes through the Python tokenizer wrapper and pads each of its batches to the longest
text; at serving rates that is where the time goes. Here tokenization calls the Rust tokenizer
directly (`encode_batch` releases the GIL and runs in parallel) and the batcher pads each chunk only
to its own longest text. The forward pass still runs the model's own module chain (transformer,
pooling, normalize), so embeddings match `encode` for any sentence-transformers model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from inference.models.base import TokenizedBatch
from inference.tokenization import TextTokenizer

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def serving_dtype(device: str, dtype: str) -> torch.dtype:
    """fp16 (or what was asked) on GPU, fp32 on CPU where half precision is slower, not faster."""
    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: expected auto|float16|bfloat16|float32, got {dtype!r}")
    return _DTYPES[dtype]


class SentenceTransformerModel:
    """A loaded sentence-transformers model, placed on its serving device at its serving dtype."""

    def __init__(self, model: SentenceTransformer, device: str = "cpu", dtype: str = "auto") -> None:
        self.device = device
        self._dtype = serving_dtype(device, dtype)
        self._model = model.to(device=device, dtype=self._dtype).eval()
        self._resident = True
        self.max_seq_length = int(model.max_seq_length or 512)
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimension = int(dimension() or 0)
        # A GPU forward pass costs about as much as a few thousand padding tokens; a CPU one far less.
        self.launch_cost_tokens = 2048 if device.startswith("cuda") else 64
        hf_tokenizer = model.tokenizer
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError("model: only models with a fast (Rust) tokenizer are supported")
        # A private copy: the model's own tokenizer keeps its padding settings for `encode`.
        self._tokenizer = TextTokenizer(backend.to_str(), max_length=self.max_seq_length)
        self._pad_id = int(hf_tokenizer.pad_token_id or 0)
        self._use_type_ids = "token_type_ids" in getattr(hf_tokenizer, "model_input_names", [])

    def tokenize(self, texts: list[str]) -> TokenizedBatch:
        return self._tokenizer.tokenize(texts)

    def tokenizer_spec(self) -> str:
        return self._tokenizer.spec

    def _padded(self, rows: list[list[int]], width: int, fill: int) -> np.ndarray:
        out = np.full((len(rows), width), fill, dtype=np.int64)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out

    def embed(self, ids: list[list[int]], type_ids: list[list[int]]) -> np.ndarray:
        width = max(len(r) for r in ids)
        input_ids = self._padded(ids, width, self._pad_id)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            mask[i, : len(row)] = 1
        with torch.inference_mode():
            features = {
                "input_ids": torch.from_numpy(input_ids).to(self.device, non_blocking=True),
                "attention_mask": torch.from_numpy(mask).to(self.device, non_blocking=True),
            }
            if self._use_type_ids:
                tt = self._padded(type_ids, width, 0)
                features["token_type_ids"] = torch.from_numpy(tt).to(self.device, non_blocking=True)
            out = self._model(features)["sentence_embedding"]
            return out.float().cpu().numpy()

    def weight_bytes(self) -> int:
        tensors = [*self._model.parameters(), *self._model.buffers()]
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def is_resident(self) -> bool:
        return self._resident

    def to_serving_device(self) -> None:
        if not self._resident:
            self._model.to(self.device)
            self._resident = True

    def to_host(self) -> None:
        if self._resident:
            # On a CPU-only server host and device are the same memory: only the bookkeeping moves.
            self._model.to("cpu")
            self._resident = False

    def warm_up(self) -> None:
        for batch in (1, 8, 64):
            for length in (16, 48):
                self.embed([[self._pad_id + 1] * length] * batch, [[0] * length] * batch)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
