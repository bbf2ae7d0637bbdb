"""The common sentence-transformers module chain, built without sentence-transformers.

Most embedding models are saved by sentence-transformers as three modules: a Hugging Face
transformer, a pooling of its token embeddings, and (often) an L2 normalisation. Serving them needs
the transformer and two tensor operations; importing sentence-transformers to get them costs more
than the whole rest of a server's start-up (it imports scikit-learn, SciPy's statistics and pandas
for its utilities: 7.4 s of a 8.6 s fork-server preload on a 2-core machine, ~10 s on the GPU
machine). `load_plain_chain` builds that chain from the model's own files (`chain_plan`), and
answers None for anything else (another module, another pooling mode, a lower-casing or argument
option), which the loader then serves through sentence-transformers itself. The transformer is the
plain-torch BERT encoder (`bert_encoder`) where `bert_files.bert_plan` accepts its files, with the
tokenizer read from tokenizer.json by `tokenizers` alone: no transformers import at all. Any other
transformer is transformers' `AutoModel` and `AutoTokenizer`; the log says which was used.

The pooling mirrors sentence-transformers' (mean accumulated in float32 for half-precision
weights, cast back; the first unmasked token for cls; masked max), and a test checks the chain
against `SentenceTransformer.encode` on the same files for each supported pooling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from inference.models.bert_encoder import load_bert_encoder
from inference.models.bert_files import bert_plan
from inference.models.chain_plan import plain_chain_plan

log = logging.getLogger("canaryflow.inference")


class PlainChain(nn.Module):
    """Transformer, pooling, optional normalisation: what `SentenceTransformerModel` needs of a model."""

    def __init__(
        self, auto_model: nn.Module, tokenizer: Any, pooling: str, normalize: bool, max_seq_length: int
    ) -> None:
        super().__init__()
        self.auto_model = auto_model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.max_seq_length = max_seq_length
        self._dimension = int(getattr(auto_model, "config").hidden_size)  # noqa: B009 (nn.Module typing)
        self._inputs = set(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))

    def get_sentence_embedding_dimension(self) -> int:
        return self._dimension

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = {name: tensor for name, tensor in features.items() if name in self._inputs}
        tokens = self.auto_model(**inputs, return_dict=True).last_hidden_state
        pooled = _pool(self.pooling, tokens, features["attention_mask"])
        return {"sentence_embedding": F.normalize(pooled, p=2, dim=-1) if self.normalize else pooled}


def _pool(mode: str, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    if mode == "cls":
        first = attention_mask.to(torch.int).argmax(dim=1)
        index = first.view(-1, 1, 1).expand(-1, 1, tokens.shape[-1])
        return torch.gather(tokens, 1, index).squeeze(1)
    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
    if mode == "max":
        return tokens.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    accumulate = torch.float32 if tokens.dtype in (torch.float16, torch.bfloat16) else tokens.dtype
    total = (tokens * mask).sum(dim=1, dtype=accumulate)
    count = torch.clamp(mask.sum(dim=1, dtype=accumulate), min=1e-9)
    return (total / count).to(tokens.dtype)


@dataclass(frozen=True)
class FilesTokenizer:
    """What `PlainChain` and `SentenceTransformerModel` read of a transformers tokenizer, from the
    model's tokenizer files (`bert_files` checked that transformers would tokenize the same)."""

    backend_tokenizer: Tokenizer
    pad_token_id: int
    model_input_names: list[str]


def load_plain_chain(model_dir: Path) -> PlainChain | None:
    """The chain on the CPU, or None (with the reason logged) when sentence-transformers must load it."""
    plan = plain_chain_plan(model_dir)
    if isinstance(plan, str):
        log.info("%s: loaded through sentence-transformers (%s)", model_dir, plan)
        return None
    transformer_dir, pooling, normalize, max_seq_length = plan
    files = bert_plan(transformer_dir)
    if not isinstance(files, str):
        log.info("%s: loaded as a plain-torch BERT encoder", model_dir)
        tokenizer = FilesTokenizer(
            Tokenizer.from_str(files.tokenizer_spec), files.pad_id, list(files.input_names)
        )
        return PlainChain(load_bert_encoder(files), tokenizer, pooling, normalize, max_seq_length)
    log.info("%s: loaded through transformers (%s)", model_dir, files)
    from transformers import AutoModel, AutoTokenizer

    auto_tokenizer = AutoTokenizer.from_pretrained(str(transformer_dir))
    auto_model = AutoModel.from_pretrained(str(transformer_dir))
    return PlainChain(auto_model, auto_tokenizer, pooling, normalize, max_seq_length)
