"""The common sentence-transformers module chain, built from transformers alone.

Most embedding models are saved by sentence-transformers as three modules: a Hugging Face
transformer, a pooling of its token embeddings, and (often) an L2 normalisation. Serving them needs
the transformer and two tensor operations; importing sentence-transformers to get them costs more
than the whole rest of a server's start-up (it imports scikit-learn, SciPy's statistics and pandas
for its utilities: 7.4 s of a 8.6 s fork-server preload on a 2-core machine, ~10 s on the GPU
machine). `load_plain_chain` builds that chain from the model's own files with transformers, and
answers None for anything else (another module, another pooling mode, a lower-casing or argument
option), which the loader then serves through sentence-transformers itself.

The pooling mirrors sentence-transformers' (mean accumulated in float32 for half-precision
weights, cast back; the first unmasked token for cls; masked max), and a test checks the chain
against `SentenceTransformer.encode` on the same files for each supported pooling.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("canaryflow.inference")

# What modules.json calls each module across sentence-transformers releases: the class name is what
# counts, under sentence_transformers.models (v2-v5) or its later module paths.
_KINDS = {"Transformer": "transformer", "Pooling": "pooling", "Normalize": "normalize"}
_POOLING_FLAGS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
POOLINGS = ("mean", "cls", "max")


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


def _read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, (dict, list)) else None


def plain_chain_plan(model_dir: Path) -> tuple[Path, str, bool, int] | str:
    """(transformer folder, pooling, normalize, max_seq_length), or why the chain is not plain."""
    modules = _read_json(model_dir / "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        return "no readable modules.json"
    kinds = [_KINDS.get(str(m.get("type", "")).rsplit(".", 1)[-1]) for m in modules]
    if kinds not in (["transformer", "pooling"], ["transformer", "pooling", "normalize"]):
        return f"modules {[m.get('type') for m in modules]}"
    transformer_dir = model_dir / str(modules[0].get("path", ""))
    settings = _read_json(transformer_dir / "sentence_bert_config.json")
    if not isinstance(settings, dict) or not isinstance(settings.get("max_seq_length"), int):
        return "no max_seq_length in sentence_bert_config.json"
    extra = {k: v for k, v in settings.items() if k != "max_seq_length" and v not in (False, None, {}, [])}
    if extra:
        return f"transformer options {sorted(extra)}"
    pooling_config = _read_json(model_dir / str(modules[1].get("path", "")) / "config.json")
    if not isinstance(pooling_config, dict):
        return "no pooling config"
    modes = [mode for flag, mode in _POOLING_FLAGS.items() if pooling_config.get(flag)]
    if isinstance(pooling_config.get("pooling_mode"), str):
        modes = [pooling_config["pooling_mode"]]
    if len(modes) != 1 or modes[0] not in POOLINGS:
        return f"pooling {modes}"
    if pooling_config.get("include_prompt", True) is not True:
        return "pooling excludes the prompt"
    return transformer_dir, modes[0], len(kinds) == 3, int(settings["max_seq_length"])


def load_plain_chain(model_dir: Path) -> PlainChain | None:
    """The chain on the CPU, or None (with the reason logged) when sentence-transformers must load it."""
    plan = plain_chain_plan(model_dir)
    if isinstance(plan, str):
        log.info("%s: loaded through sentence-transformers (%s)", model_dir, plan)
        return None
    transformer_dir, pooling, normalize, max_seq_length = plan
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(transformer_dir))
    auto_model = AutoModel.from_pretrained(str(transformer_dir))
    return PlainChain(auto_model, tokenizer, pooling, normalize, max_seq_length)
