"""A BERT transformer folder read without torch or transformers: what `bert_encoder` serves.

`bert_plan` accepts a folder only when every file says exactly what the plain-torch encoder does,
so that it embeds as transformers' `BertModel` and tokenizer would; anything else is a reason, and
the loader loads that model through transformers instead:

- config.json: model_type "bert", absolute positions, an encoder (no decoder, no cross-attention),
  an activation in `ACTIVATIONS`; missing sizes take BertConfig's defaults, as transformers does;
- model.safetensors (one file, not shards): every encoder weight at the configured shape, named
  as BertModel saves them or under the "bert." prefix of the BertFor* heads' checkpoints (and
  LayerNorm's old gamma/beta names); position_ids, the pooler and any head are not used, as
  BertModel does not use them;
- tokenizer.json: BERT's normalizer, pre-tokenizer and WordPiece model, whose options agree with
  tokenizer_config.json (transformers builds a BERT tokenizer's normalizer from tokenizer_config.json,
  not from tokenizer.json), and added tokens that are exactly the configured special tokens.

The safetensors header (8 bytes of length, then JSON naming each tensor's dtype and shape) is read
here directly: the shapes are checked before anything is loaded, and the parent process decides
without importing torch (inference/runner.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.models.chain_plan import read_json

# transformers' names of the activations the encoder computes the same way (`bert_encoder._act`).
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
# BertConfig's defaults, used by transformers for a key config.json leaves out.
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
    "layer_norm_eps": 1e-12, "hidden_act": "gelu",
}  # fmt: skip
_INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")  # BertTokenizer.model_input_names
_SPECIAL = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
            "mask_token": "[MASK]"}  # fmt: skip
_FLOATS = ("F32", "F16", "BF16")
_MAX_HEADER_BYTES = 64 << 20


@dataclass(frozen=True)
class BertShape:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str


@dataclass(frozen=True)
class BertFiles:
    """Everything the encoder needs, checked: its shape, where each of its parameters is stored
    (the checkpoint tensors concatenated along the first axis: the fused query-key-value
    projection is three), and the tokenizer as `SentenceTransformerModel` takes it."""

    shape: BertShape
    weights: Path
    sources: dict[str, tuple[str, ...]]
    tokenizer_spec: str
    pad_id: int
    input_names: tuple[str, ...]


def _shape(config: dict[str, Any]) -> BertShape | str:
    if config.get("model_type") != "bert":
        return f"model_type {config.get('model_type')!r}"
    if config.get("position_embedding_type", "absolute") not in ("absolute", None):
        return f"position_embedding_type {config['position_embedding_type']!r}"
    if config.get("is_decoder") or config.get("add_cross_attention"):
        return "a decoder"
    values = {key: config.get(key, default) for key, default in _DEFAULTS.items()}
    if values["hidden_act"] not in ACTIVATIONS:
        return f"hidden_act {values['hidden_act']!r}"
    ints = [key for key in _DEFAULTS if key not in ("layer_norm_eps", "hidden_act")]
    if not all(type(values[key]) is int and values[key] > 0 for key in ints):
        return f"config sizes {[key for key in ints if type(values[key]) is not int or values[key] <= 0]}"
    if (
        not isinstance(values["layer_norm_eps"], (int, float))
        or values["hidden_size"] % values["num_attention_heads"]
    ):
        return "layer_norm_eps or heads do not fit"
    return BertShape(**{**values, "layer_norm_eps": float(values["layer_norm_eps"])})


def _expected(shape: BertShape) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """The encoder's parameters: each one's checkpoint tensors (BertModel's names) and their shapes."""
    h, i = shape.hidden_size, shape.intermediate_size
    vector, square = (h,), (h, h)
    out: dict[str, list[tuple[str, tuple[int, ...]]]] = {
        "word.weight": [("embeddings.word_embeddings.weight", (shape.vocab_size, h))],
        "position.weight": [("embeddings.position_embeddings.weight", (shape.max_position_embeddings, h))],
        "token_type.weight": [("embeddings.token_type_embeddings.weight", (shape.type_vocab_size, h))],
        "embedding_norm.weight": [("embeddings.LayerNorm.weight", vector)],
        "embedding_norm.bias": [("embeddings.LayerNorm.bias", vector)],
    }
    for n in range(shape.num_hidden_layers):
        theirs, ours = f"encoder.layer.{n}.", f"layers.{n}."
        for kind, dims in (("weight", square), ("bias", vector)):
            out[f"{ours}qkv.{kind}"] = [
                (f"{theirs}attention.self.{p}.{kind}", dims) for p in ("query", "key", "value")
            ]
        for mine, their, dims in (
            ("attention_out.weight", "attention.output.dense.weight", square),
            ("attention_out.bias", "attention.output.dense.bias", vector),
            ("attention_norm.weight", "attention.output.LayerNorm.weight", vector),
            ("attention_norm.bias", "attention.output.LayerNorm.bias", vector),
            ("intermediate.weight", "intermediate.dense.weight", (i, h)),
            ("intermediate.bias", "intermediate.dense.bias", (i,)),
            ("output.weight", "output.dense.weight", (h, i)),
            ("output.bias", "output.dense.bias", vector),
            ("output_norm.weight", "output.LayerNorm.weight", vector),
            ("output_norm.bias", "output.LayerNorm.bias", vector),
        ):
            out[ours + mine] = [(theirs + their, dims)]
    return out


def safetensors_header(path: Path) -> dict[str, Any] | str:
    """The tensors a safetensors file holds (name: dtype, shape, offsets), from its header only."""
    try:
        with path.open("rb") as file:
            size = int.from_bytes(file.read(8), "little")
            if not 2 <= size <= _MAX_HEADER_BYTES:
                return f"{path.name}: header of {size} bytes"
            header = json.loads(file.read(size))
    except (OSError, ValueError) as exc:
        return f"{path.name}: {exc}"
    if not isinstance(header, dict):
        return f"{path.name}: header is not an object"
    header.pop("__metadata__", None)
    return header


def _sources(shape: BertShape, header: dict[str, Any]) -> dict[str, tuple[str, ...]] | str:
    prefix = next((p for p in ("", "bert.") if f"{p}embeddings.word_embeddings.weight" in header), None)
    if prefix is None:
        return "no embeddings.word_embeddings.weight in model.safetensors"
    sources: dict[str, tuple[str, ...]] = {}
    for mine, theirs in _expected(shape).items():
        names = []
        for name, dims in theirs:
            stored = prefix + name
            if stored not in header:  # checkpoints converted from TensorFlow name LayerNorm's gamma/beta
                stored = stored.removesuffix(".weight").removesuffix(".bias")
                stored += ".gamma" if name.endswith(".weight") else ".beta"
            entry = header.get(stored)
            if not isinstance(entry, dict):
                return f"{prefix + name} missing from model.safetensors"
            if (
                entry.get("dtype") not in _FLOATS
                or not isinstance(entry.get("shape"), list)
                or tuple(entry["shape"]) != dims
            ):
                return f"{stored}: {entry.get('dtype')} {entry.get('shape')}, expected {list(dims)}"
            names.append(stored)
        sources[mine] = tuple(names)
    return sources


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _content(token: Any) -> str | None:
    """A token as tokenizer_config.json writes it: a string or an AddedToken's fields."""
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else None


def _tokenizer(folder: Path) -> tuple[str, int, tuple[str, ...]] | str:
    """(tokenizer.json text, pad id, input names), or why transformers would tokenize differently."""
    try:
        spec = (folder / "tokenizer.json").read_text()
        doc = json.loads(spec)
    except (OSError, ValueError):
        return "no readable tokenizer.json"
    settings = read_json(folder / "tokenizer_config.json") or {}
    mapped = read_json(folder / "special_tokens_map.json") or {}
    if not isinstance(doc, dict) or not isinstance(settings, dict) or not isinstance(mapped, dict):
        return "tokenizer files are not JSON objects"
    if settings.get("tokenizer_class") not in (None, "BertTokenizer", "BertTokenizerFast"):
        return f"tokenizer_class {settings.get('tokenizer_class')!r}"
    if settings.get("do_basic_tokenize", True) is not True or settings.get("never_split"):
        return "tokenizer options do_basic_tokenize/never_split"
    model, normalizer = _object(doc.get("model")), _object(doc.get("normalizer"))
    if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
        return f"tokenizer model {model.get('type')!r}"
    if (model.get("continuing_subword_prefix"), model.get("max_input_chars_per_word")) != ("##", 100):
        return "WordPiece options"
    if _object(doc.get("pre_tokenizer")).get("type") != "BertPreTokenizer":
        return "pre-tokenizer"
    if _object(doc.get("post_processor")).get("type") not in ("TemplateProcessing", "BertProcessing"):
        return "post-processor"
    wanted = (True, settings.get("tokenize_chinese_chars", True), settings.get("strip_accents"),
              settings.get("do_lower_case", True))  # fmt: skip
    found = tuple(
        normalizer.get(k) for k in ("clean_text", "handle_chinese_chars", "strip_accents", "lowercase")
    )
    if normalizer.get("type") != "BertNormalizer" or found != wanted:
        return "normalizer differs from tokenizer_config.json"
    special: dict[str, str] = {}
    for key, default in _SPECIAL.items():
        named = {_content(source[key]) for source in (settings, mapped) if key in source}
        if len(named) > 1 or None in named:
            return f"{key} differs between tokenizer files"
        special[key] = next((token for token in named if token is not None), default)
    if model.get("unk_token") != special["unk_token"]:
        return "unk_token"
    vocab: dict[str, int] = model["vocab"]
    declared = _object(settings.get("added_tokens_decoder"))
    extra = _items(settings.get("additional_special_tokens")) + _items(settings.get("extra_special_tokens"))
    expected = {*special.values(), *(_content(t) for t in extra), *(_content(t) for t in declared.values())}
    added = [_object(token) for token in _items(doc.get("added_tokens"))]
    if {_content(t) for t in added} != expected or not all(token in vocab for token in special.values()):
        return "added tokens differ from the special tokens"
    for token in added:
        plain = not (token.get("lstrip") or token.get("rstrip") or token.get("single_word"))
        if not (
            token.get("special")
            and plain
            and vocab.get(str(token.get("content")), token.get("id")) == token.get("id")
        ):
            return f"added token {token.get('content')!r}"
    names = settings.get("model_input_names") or list(_INPUT_NAMES)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return f"model_input_names {names}"
    if not {"input_ids", "attention_mask"} <= set(names) <= set(_INPUT_NAMES):
        return f"model_input_names {names}"
    pad_id = vocab[special["pad_token"]]
    return (spec, pad_id, tuple(names)) if type(pad_id) is int else "pad token id"


def bert_plan(folder: Path) -> BertFiles | str:
    """The checked files of a BERT transformer folder, or why the encoder does not serve it."""
    config = read_json(folder / "config.json")
    if not isinstance(config, dict):
        return "no readable config.json"
    shape = _shape(config)
    if isinstance(shape, str):
        return shape
    weights = folder / "model.safetensors"
    if not weights.is_file():
        return "no model.safetensors"
    header = safetensors_header(weights)
    if isinstance(header, str):
        return header
    sources = _sources(shape, header)
    if isinstance(sources, str):
        return sources
    tokenizer = _tokenizer(folder)
    if isinstance(tokenizer, str):
        return tokenizer
    return BertFiles(shape, weights, sources, *tokenizer)
