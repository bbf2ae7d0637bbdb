"""The plain-torch BERT encoder against transformers and sentence-transformers on the same files.

Small random BERT models (built here from transformers' BertConfig, saved as sentence-transformers
folders beside all-MiniLM-L6-v2's tokenizer) cover what the packaged model does not: checkpoints
under the "bert." prefix with heads, a pooler and position_ids, another activation, a tokenizer
without token type ids, and token type ids that are not all zero.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from canaryflow.adapters.model_assets import minilm_path
from inference.models.bert_encoder import BertEncoder, load_bert_encoder
from inference.models.bert_files import BertFiles, bert_plan
from inference.models.loader import load_model
from inference.models.plain_chain import PlainChain
from inference.runner import preload_modules
from inference.server_settings import InferenceSettings

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "A man is eating food.",
    "short",
    "Ünïcödé text and CJK 漢字 go through the same chain.",
    " ".join(["a long text that is cut at the model's maximum length"] * 40),
    "The new movie is awesome, said nobody — ever.",
]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
         "max_position_embeddings": 300, "type_vocab_size": 3}  # fmt: skip


def _random_bert(
    folder: Path,
    pooling: str = "mean",
    normalize: bool = True,
    heads: bool = False,
    position_ids: bool = False,
    token_type_ids: bool = True,
    **config: Any,
) -> Path:
    """A sentence-transformers folder holding a seeded random BERT of the SMALL shape."""
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForMaskedLM, BertModel

    torch.manual_seed(len(str(folder)))
    cfg = BertConfig(vocab_size=30522, **{**SMALL, **config})
    model = BertForMaskedLM(cfg) if heads else BertModel(cfg, add_pooling_layer=True)
    with torch.no_grad():  # weights far from BERT's small initial ones, so that every step shows
        for name, param in model.named_parameters():
            param.normal_(
                1.0 if name.endswith("LayerNorm.weight") else 0.0, 0.5 if "LayerNorm" in name else 0.15
            )
    state = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    if position_ids:
        state["embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings)[None]
    folder.mkdir(parents=True)
    cfg.save_pretrained(folder)
    save_file(state, folder / "model.safetensors")
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_path() / name, folder / name)
    if not token_type_ids:
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        settings["model_input_names"] = ["input_ids", "attention_mask"]
        (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    flags = {f"pooling_mode_{m}": m.startswith(pooling) for m in ("mean_tokens", "cls_token", "max_tokens")}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 64, **flags}))
    return folder


def _encode(folder: Path) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)


VARIANTS: dict[str, dict[str, Any]] = {
    "mean-normalized": {},
    "cls-heads-position-ids": {"pooling": "cls", "normalize": False, "heads": True, "position_ids": True},
    "max-no-type-ids-gelu-new": {"pooling": "max", "token_type_ids": False, "hidden_act": "gelu_new"},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_random_bert_embeds_as_sentence_transformers_does(tmp_path: Path, variant: str) -> None:
    folder = _random_bert(tmp_path / variant, **VARIANTS[variant])
    served = load_model(str(folder), device="cpu")
    chain = served._model  # type: ignore[attr-defined]
    assert isinstance(chain, PlainChain) and isinstance(chain.auto_model, BertEncoder)
    assert served._use_type_ids is VARIANTS[variant].get("token_type_ids", True)  # type: ignore[attr-defined]
    np.testing.assert_allclose(served.embed(served.tokenize(TEXTS)), _encode(folder), atol=1e-5)


def test_the_encoder_equals_transformers_bert_with_token_types_and_padding(tmp_path: Path) -> None:
    """Token type ids present (not all zero) and absent, rows padded to the longest."""
    from transformers import BertModel

    folder = _random_bert(tmp_path / "pairs", heads=True)
    files = bert_plan(folder)
    assert isinstance(files, BertFiles)
    ours = load_bert_encoder(files)
    theirs = BertModel.from_pretrained(str(folder)).eval()
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(1000, 30000, (5, 40), generator=gen)
    lengths = torch.tensor([40, 3, 17, 1, 29])
    mask = (torch.arange(40)[None, :] < lengths[:, None]).long()
    types = (torch.arange(40)[None, :] >= lengths[:, None] // 2).long() * mask
    with torch.inference_mode():
        for type_ids in (types, None):
            got = ours(ids, mask, type_ids).last_hidden_state
            want = theirs(input_ids=ids, attention_mask=mask, token_type_ids=type_ids).last_hidden_state
            real = mask.bool()  # padded positions are never pooled
            torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=0)


def test_minilm_loads_without_importing_transformers() -> None:
    code = (
        "import sys\n"
        "from canaryflow.adapters.model_assets import minilm_path\n"
        "from inference.models.loader import load_model\n"
        "model = load_model(str(minilm_path()), device='cpu')\n"
        "model.embed(model.tokenize(['a canary arrives']))\n"
        "print(sorted(m for m in ('transformers', 'sentence_transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_fork_server_imports_transformers_only_where_a_served_model_may_need_it(tmp_path: Path) -> None:
    from canaryflow.kernel.contracts.routing import RoutingConfig

    other = _random_bert(tmp_path / "other")
    _edit(other, "config.json", model_type="roberta")

    def imports(*uris: str, routing_file: Path | None = None) -> bool:
        versions = [
            {"version": str(i), "uri": uri, "weight": 100 if i == 1 else 0} for i, uri in enumerate(uris, 1)
        ]
        routing = RoutingConfig.model_validate({"model": "m", "versions": versions}) if uris else None
        preload = preload_modules(InferenceSettings(routing_file=routing_file), routing)
        assert "torch" in preload
        return "transformers.modeling_utils" in preload

    minilm = str(minilm_path())
    assert not imports(minilm)
    assert not imports(minilm, f"file://{minilm}")
    assert imports(minilm, "models:/minilm/2")  # resolved by the worker: cannot be known here
    assert imports(minilm, str(other))
    routing_file = tmp_path / "routing.yaml"
    routing_file.write_text(f"model: m\nversions:\n  - version: '1'\n    uri: {minilm}\n    weight: 100\n")
    assert not imports(routing_file=routing_file)
    assert imports(routing_file=tmp_path / "missing.yaml")


def _edit(folder: Path, name: str, **changes: Any) -> None:
    doc = json.loads((folder / name).read_text())
    (folder / name).write_text(json.dumps({**doc, **changes}))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: _edit(f, "config.json", model_type="roberta"), "model_type 'roberta'"),
        (lambda f: _edit(f, "config.json", position_embedding_type="relative_key"),
         "position_embedding_type 'relative_key'"),
        (lambda f: _edit(f, "config.json", hidden_act="swish"), "hidden_act 'swish'"),
        (lambda f: _edit(f, "config.json", num_hidden_layers=3),
         "encoder.layer.2.attention.self.query.weight missing from model.safetensors"),
        (lambda f: _edit(f, "config.json", intermediate_size=96),
         "encoder.layer.0.intermediate.dense.weight: F32 [128, 64], expected [96, 64]"),
        (lambda f: _edit(f, "tokenizer_config.json", do_lower_case=False),
         "normalizer differs from tokenizer_config.json"),
        (lambda f: _edit(f, "tokenizer_config.json", tokenizer_class="DistilBertTokenizer"),
         "tokenizer_class 'DistilBertTokenizer'"),
        (lambda f: (f / "model.safetensors").rename(f / "model-00001-of-00001.safetensors"),
         "no model.safetensors"),
    ],
)  # fmt: skip
def test_files_the_encoder_does_not_understand_load_through_transformers(
    tmp_path: Path, change: Any, reason: str
) -> None:
    folder = _random_bert(tmp_path / "model")
    change(folder)
    assert bert_plan(folder) == reason


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("tokenizer.json", {"model": []}),
        ("tokenizer.json", {"added_tokens": "[PAD]"}),
        ("tokenizer.json", {"added_tokens": [1, {"content": None}]}),
        ("tokenizer_config.json", {"added_tokens_decoder": [], "model_input_names": [{}]}),
        ("tokenizer_config.json", {"model_input_names": [["input_ids"]]}),
        ("config.json", {"hidden_size": "64", "hidden_act": ["gelu"]}),
    ],
)
def test_malformed_files_are_a_reason_not_an_error(
    tmp_path: Path, name: str, changes: dict[str, Any]
) -> None:
    """The parent process reads these files before starting anything: a file of the wrong shape
    must not stop the server, only send the model to transformers (which then says what is wrong)."""
    folder = _random_bert(tmp_path / "model")
    _edit(folder, name, **changes)
    assert isinstance(bert_plan(folder), str)


def test_a_bert_it_does_not_understand_is_served_by_transformers(tmp_path: Path) -> None:
    folder = _random_bert(tmp_path / "cased")
    _edit(folder, "tokenizer_config.json", do_lower_case=False)  # transformers follows this file
    served = load_model(str(folder), device="cpu")
    chain = served._model  # type: ignore[attr-defined]
    assert isinstance(chain, PlainChain) and type(chain.auto_model).__name__ == "BertModel"
    np.testing.assert_allclose(served.embed(served.tokenize(TEXTS)), _encode(folder), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_encoder_is_captured_in_cuda_graphs() -> None:
    """Captured (no host synchronisation mid-pass) and equal to eager passes and to transformers'."""
    import os

    from sentence_transformers import SentenceTransformer

    from inference.models.sentence_transformer import SentenceTransformerModel

    folder = os.environ.get("CANARYFLOW_TEST_MODEL_DIR") or str(minilm_path())
    graphed = load_model(folder, device="cuda")
    graphed.warm_up()
    assert isinstance(graphed, SentenceTransformerModel) and graphed._graphs is not None
    reference = SentenceTransformerModel(SentenceTransformer(folder, device="cpu"), "cuda", cuda_graphs=False)
    batch = graphed.tokenize(TEXTS * 7)
    np.testing.assert_allclose(graphed.embed(batch), reference.embed(batch), atol=2e-3)
