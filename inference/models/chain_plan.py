"""What a model folder's files say about how to serve it, read without importing torch.

The loader picks one of three ways to load a sentence-transformers folder (docs/inference.md,
"Loading"): the plain-torch BERT encoder (`bert_encoder`), the plain chain over transformers
(`plain_chain`), or sentence-transformers itself. The choice is made from the files alone, here,
so that the server's parent process can make it before any worker starts (inference/runner.py
leaves transformers out of the fork server's imports when no served model needs it) without paying
for a torch import it does not otherwise need.

`plain_chain_plan` reads modules.json, the transformer's sentence_bert_config.json and the pooling
config; `bert_plan` (inference/models/bert_files.py) then reads the transformer's own files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    """A model file's JSON object or list; None when it is missing or not JSON."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, (dict, list)) else None


def plain_chain_plan(model_dir: Path) -> tuple[Path, str, bool, int] | str:
    """(transformer folder, pooling, normalize, max_seq_length), or why the chain is not plain."""
    modules = read_json(model_dir / "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        return "no readable modules.json"
    kinds = [_KINDS.get(str(m.get("type", "")).rsplit(".", 1)[-1]) for m in modules]
    if kinds not in (["transformer", "pooling"], ["transformer", "pooling", "normalize"]):
        return f"modules {[m.get('type') for m in modules]}"
    transformer_dir = model_dir / str(modules[0].get("path", ""))
    settings = read_json(transformer_dir / "sentence_bert_config.json")
    if not isinstance(settings, dict) or not isinstance(settings.get("max_seq_length"), int):
        return "no max_seq_length in sentence_bert_config.json"
    extra = {k: v for k, v in settings.items() if k != "max_seq_length" and v not in (False, None, {}, [])}
    if extra:
        return f"transformer options {sorted(extra)}"
    pooling_config = read_json(model_dir / str(modules[1].get("path", "")) / "config.json")
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
