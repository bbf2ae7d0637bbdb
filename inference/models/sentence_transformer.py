"""sentence-transformers models served without `model.encode`.

`encode` tokenizes through the Python tokenizer wrapper and pads each of its batches to the longest
text; at serving rates that is where the time goes. Here tokenization calls the Rust tokenizer
directly (`encode_batch` releases the GIL and runs in parallel) and the batcher pads each chunk only
to its own longest text. The forward pass still runs the model's own module chain (transformer,
pooling, normalize), so embeddings match `encode` for any sentence-transformers model; on a GPU that
chain is captured once per shape bucket as a CUDA graph and replayed (`cuda_graphs`).

Under a memory budget the server loads every model with the server's weight slots
(`weight_slots`): the model keeps its weights in host memory and runs on a device slot of its
architecture while the cache has it on the device, so moving it back and forth keeps the slot's
graphs. Without slots the model's own module is on the device and a move takes the graphs with it.
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

import numpy as np
import torch

from inference.models.base import PASS_TOKENS, TokenizedBatch
from inference.models.cuda_graphs import GraphedForward
from inference.models.weight_slots import Slot, WeightSlots, module_tensors, slot_signature
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
    """A loaded sentence-transformers model, placed on its serving device at its serving dtype
    (with `slots`: kept in host memory at that dtype and run on a weight slot while resident)."""

    def __init__(
        self,
        model: SentenceTransformer | PlainChain,
        device: str = "cpu",
        dtype: str = "auto",
        cuda_graphs: bool = True,
        matryoshka_dims: tuple[int, ...] = (),
        capture_all: bool = False,
        gpu_streams: int = 1,
        slots: WeightSlots | None = None,
    ) -> None:
        self.device = device
        self._dtype = serving_dtype(device, dtype)
        # With slots the module stays in host memory (`share_slots`): placed on the device only here.
        self._model = model.to(device="cpu" if slots is not None else device, dtype=self._dtype).eval()
        self._serving: torch.nn.Module | None = self._model
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
        self._graphed = cuda_graphs and device.startswith("cuda")
        # Graphs cut a chunk into replays of at most this many tokens; eager passes are not cut.
        self.pass_tokens: int | None = PASS_TOKENS if self._graphed else None
        self._lanes = gpu_streams
        self._slots: WeightSlots | None = None
        self._slot: Slot | None = None
        self._host: list[torch.Tensor] = []
        self._signature: object = None
        if slots is not None:
            self.share_slots(slots)
        elif self._graphed:
            self._graphs = self._new_graphs(self._model)

    def _new_graphs(self, module: torch.nn.Module) -> GraphedForward:
        def forward(features: dict[str, torch.Tensor]) -> torch.Tensor:
            return module(features)["sentence_embedding"]

        return GraphedForward(
            forward, self.device, self.dimension, self.max_seq_length, self._pad_id, self._use_type_ids,
            lanes=self._lanes,
        )  # fmt: skip

    def tokenize(self, texts: list[str]) -> TokenizedBatch:
        return self._tokenizer.tokenize(texts)

    def tokenizer_spec(self) -> str:
        return self._tokenizer.spec

    def _eager(self, batch: TokenizedBatch) -> np.ndarray:
        width = int(batch.lengths.max())
        planes = np.empty((3 if self._use_type_ids else 2, len(batch), width), dtype=np.int64)
        batch.pad_into(planes[0], planes[1], planes[2] if self._use_type_ids else None, self._pad_id)
        if self._graphs is not None:  # on a weight slot: after a copy of this model's weights
            self._graphs.after_weights(torch.cuda.current_stream(self.device))
        inputs = torch.from_numpy(planes).to(self.device, non_blocking=True)
        features = {"input_ids": inputs[0], "attention_mask": inputs[1]}
        if self._use_type_ids:
            features["token_type_ids"] = inputs[2]
        with torch.inference_mode():
            return self._forward(features).float().cpu().numpy()

    def _forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if self._serving is None:
            raise RuntimeError("a forward pass of a model whose weights are not on the device")
        return self._serving(features)["sentence_embedding"]

    def embed(self, batch: TokenizedBatch) -> np.ndarray:
        if self._graphs is not None:
            return self._graphs.run(batch)
        return self._eager(batch)

    def device_bytes(self) -> int:
        if self._slots is not None:
            return self._slot.bytes() if self._slot is not None else self._slots.expected_bytes(self)
        tensors = module_tensors(self._model)
        weights = int(sum(t.numel() * t.element_size() for t in tensors))
        return weights + (self._graphs.pool_bytes if self._graphs is not None else 0)

    def is_resident(self) -> bool:
        return self._resident

    def to_serving_device(self) -> None:
        if self._resident:
            return
        if self._slots is None:  # graphs went with the old addresses; recaptured on next use
            self._model.to(self.device)
            self._resident = True
            return
        slot = self._slots.bind(self, self._make_slot)
        try:
            slot.load(self._host)
        except BaseException:
            self._slots.unbind(slot)
            raise
        self._slot, self._serving, self._graphs = slot, slot.module, slot.graphs
        self._resident = True

    def to_host(self) -> None:
        if not self._resident:
            return
        if self._slots is not None:  # the weights are in host memory already: the slot is let go
            assert self._slot is not None
            self._slots.unbind(self._slot)
            self._slot, self._serving, self._graphs = None, None, None
            self._resident = False
            return
        # On a CPU-only server host and device are the same memory: only the bookkeeping moves.
        if self._graphs is not None:
            self._graphs.release()
        self._model.to("cpu")
        self._resident = False

    def share_slots(self, slots: WeightSlots) -> None:
        """Keep the weights in host memory (pinned on a GPU, so copies to a slot are asynchronous)
        and run on `slots` from now on; the model is off the device until the cache brings it in."""
        if self._slots is not None:
            return
        if self._graphs is not None:
            self._graphs.release()
            self._graphs = None
        self._model.to("cpu")
        if self.device.startswith("cuda"):
            for tensor in module_tensors(self._model):
                tensor.data = tensor.data.pin_memory()
        self._host = module_tensors(self._model)
        self._slots, self._serving, self._resident = slots, None, False
        self._signature = slot_signature(
            self._model, self.device, str(self._dtype), self.max_seq_length, self._pad_id,
            self._use_type_ids, self._graphed, self._lanes,
        )  # fmt: skip
        slots.join(self, self._signature, int(sum(t.numel() * t.element_size() for t in self._host)))

    def _make_slot(self) -> Slot:
        """A new slot for this model's signature: a device copy of its module, with graphs."""
        assert self._slots is not None
        module = copy.deepcopy(self._model).to(self.device).eval()
        for tensor in module_tensors(module):
            tensor.requires_grad_(False)
        graphs = self._new_graphs(module) if self._graphed else None
        return Slot(self._signature, module, graphs)

    def warm_up(self) -> None:
        if self._graphs is not None:
            problem = self._capture_graphs()
            if problem is None:
                return
            # A model whose forward does not capture cleanly is served eagerly, not wrongly.
            log.warning("CUDA graphs not used (%s): serving eagerly", problem)
            self._graphs.release()
            self._graphs = None
            if self._slot is not None:  # every model on this slot runs eagerly from now on
                self._slot.graphs = None
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
