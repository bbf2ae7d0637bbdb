"""sentence-transformers models served without `model.encode`.

`encode` tokenizes through the Python tokenizer wrapper and pads each of its batches to the longest
text; at serving rates that is where the time goes. Here tokenization calls the Rust tokenizer
directly (`encode_batch` releases the GIL and runs in parallel) and the batcher pads each chunk only
to its own longest text. The forward pass still runs the model's own module chain (transformer,
pooling, normalize), so embeddings match `encode` for any sentence-transformers model; on a GPU that
chain is captured once per shape bucket as a CUDA graph and replayed (`cuda_graphs`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch

from inference.models.base import TokenizedBatch
from inference.models.cuda_graphs import GraphedForward
from inference.tokenization import TextTokenizer

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from inference.models.plain_chain import PlainChain

log = logging.getLogger("canaryflow.inference")
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

    def __init__(
        self,
        model: SentenceTransformer | PlainChain,
        device: str = "cpu",
        dtype: str = "auto",
        cuda_graphs: bool = True,
        matryoshka_dims: tuple[int, ...] = (),
        capture_all: bool = False,
        gpu_streams: int = 1,
    ) -> None:
        self.device = device
        self._dtype = serving_dtype(device, dtype)
        self._model = model.to(device=device, dtype=self._dtype).eval()
        self._resident = True
        self.max_seq_length = int(model.max_seq_length or 512)
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimension = int(dimension() or 0)
        self.matryoshka_dims = tuple(sorted(d for d in matryoshka_dims if 0 < d <= self.dimension))
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
        self._graphs: GraphedForward | None = None
        self._capture_all = capture_all
        if cuda_graphs and device.startswith("cuda"):
            self._graphs = GraphedForward(
                self._forward, device, self.dimension, self.max_seq_length, self._pad_id,
                self._use_type_ids, lanes=gpu_streams,
            )  # fmt: skip

    def tokenize(self, texts: list[str]) -> TokenizedBatch:
        return self._tokenizer.tokenize(texts)

    def tokenizer_spec(self) -> str:
        return self._tokenizer.spec

    def _eager(self, batch: TokenizedBatch) -> np.ndarray:
        width = int(batch.lengths.max())
        planes = np.empty((3 if self._use_type_ids else 2, len(batch), width), dtype=np.int64)
        batch.pad_into(planes[0], planes[1], planes[2] if self._use_type_ids else None, self._pad_id)
        inputs = torch.from_numpy(planes).to(self.device, non_blocking=True)
        features = {"input_ids": inputs[0], "attention_mask": inputs[1]}
        if self._use_type_ids:
            features["token_type_ids"] = inputs[2]
        with torch.inference_mode():
            return self._forward(features).float().cpu().numpy()

    def _forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._model(features)["sentence_embedding"]

    def embed(self, batch: TokenizedBatch) -> np.ndarray:
        if self._graphs is not None:
            return self._graphs.run(batch)
        return self._eager(batch)

    def device_bytes(self) -> int:
        tensors = [*self._model.parameters(), *self._model.buffers()]
        weights = int(sum(t.numel() * t.element_size() for t in tensors))
        return weights + (self._graphs.pool_bytes if self._graphs is not None else 0)

    def is_resident(self) -> bool:
        return self._resident

    def to_serving_device(self) -> None:
        if not self._resident:  # graphs went with the old addresses; recaptured on next use
            self._model.to(self.device)
            self._resident = True

    def to_host(self) -> None:
        if self._resident:
            # On a CPU-only server host and device are the same memory: only the bookkeeping moves.
            if self._graphs is not None:
                self._graphs.release()
            self._model.to("cpu")
            self._resident = False

    def warm_up(self) -> None:
        if self._graphs is not None:
            problem = self._capture_graphs()
            if problem is None:
                return
            # A model whose forward does not capture cleanly is served eagerly, not wrongly.
            log.warning("CUDA graphs not used (%s): serving eagerly", problem)
            self._graphs.release()
            self._graphs = None
        for rows in (1, 8, 64):
            for width in (16, 48):
                self._eager(TokenizedBatch.filled(rows, width, self._pad_id + 1))

    def _capture_graphs(self) -> str | None:
        """Capture every bucket and check a graphed pass against an eager one; None when usable."""
        assert self._graphs is not None
        try:
            if self._capture_all:
                self._graphs.capture_all()
            else:
                self._graphs.capture_common()
        except RuntimeError as exc:  # e.g. a forward that reads a tensor on the host mid-pass
            return f"capture failed: {exc}"
        rng = np.random.default_rng(0)
        lengths = rng.integers(3, 33, size=29).astype(np.int32)  # a bucket captured before ready
        batch = TokenizedBatch(
            rng.integers(1000, 20000, size=int(lengths.sum())).astype(np.int32),
            lengths,
            None,
            np.zeros(len(lengths), dtype=bool),
        )
        gap = float(np.abs(self._graphs.run(batch) - self._eager(batch)).max())
        return None if gap < 1e-2 else f"graphed passes differ from eager ones by up to {gap:.3g}"
