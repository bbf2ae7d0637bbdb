"""The plain module chain (the plain-torch BERT encoder for MiniLM) against sentence-transformers
on the same files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from canaryflow.adapters.model_assets import minilm_path
from inference.models.bert_encoder import BertEncoder
from inference.models.chain_plan import plain_chain_plan
from inference.models.loader import load_model
from inference.models.plain_chain import PlainChain

TEXTS = [
    "A man is eating food.",
    "The new movie is awesome, said nobody — ever.",
    "Ünïcödé text and CJK 漢字 go through the same chain.",
    "short",
    " ".join(["a long text that is cut at the model's maximum length"] * 40),
]


def _variant(tmp: Path, pooling: str | None = "mean", normalize: bool = True, **transformer: Any) -> Path:
    """A copy of all-MiniLM-L6-v2's folder (weights linked) with another pooling or module list."""
    source = minilm_path()
    target = tmp / f"minilm-{pooling}-{normalize}-{len(transformer)}"
    target.mkdir()
    for item in source.iterdir():
        if item.is_file():
            (target / item.name).symlink_to(item)
    shutil.copytree(source / "1_Pooling", target / "1_Pooling")
    modules = json.loads((source / "modules.json").read_text())
    modules = [m for m in modules if normalize or not m["type"].endswith("Normalize")]
    (target / "modules.json").unlink()
    (target / "modules.json").write_text(json.dumps(modules))
    pooling_file = target / "1_Pooling" / "config.json"
    config = json.loads(pooling_file.read_text())
    flags = {
        "mean": "pooling_mode_mean_tokens",
        "cls": "pooling_mode_cls_token",
        "max": "pooling_mode_max_tokens",
        "weightedmean": "pooling_mode_weightedmean_tokens",
    }
    for flag in flags.values():
        config[flag] = False
    if pooling is not None:
        config[flags[pooling]] = True
    pooling_file.write_text(json.dumps(config))
    if transformer:
        settings = json.loads((source / "sentence_bert_config.json").read_text())
        (target / "sentence_bert_config.json").unlink()
        (target / "sentence_bert_config.json").write_text(json.dumps({**settings, **transformer}))
    return target


@pytest.mark.parametrize(("pooling", "normalize"), [("mean", True), ("cls", False), ("max", True)])
def test_the_plain_chain_embeds_as_sentence_transformers_does(
    tmp_path: Path, pooling: str, normalize: bool
) -> None:
    from sentence_transformers import SentenceTransformer

    folder = _variant(tmp_path, pooling, normalize)
    served = load_model(str(folder), device="cpu")
    chain = served._model  # type: ignore[attr-defined]
    assert isinstance(chain, PlainChain) and isinstance(chain.auto_model, BertEncoder)
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    got = served.embed(served.tokenize(TEXTS))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert served.dimension == expected.shape[1]
    assert served.max_seq_length == 256


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ({"pooling": "weightedmean"}, "pooling ['weightedmean']"),
        ({"pooling": None}, "pooling []"),
        ({"do_lower_case": True}, "transformer options ['do_lower_case']"),
        ({"model_args": {"trust_remote_code": True}}, "transformer options ['model_args']"),
    ],
)
def test_any_other_chain_is_loaded_by_sentence_transformers(
    tmp_path: Path, variant: dict[str, Any], reason: str
) -> None:
    pooling = variant.pop("pooling", "mean")
    folder = _variant(tmp_path, pooling, True, **variant)
    assert plain_chain_plan(folder) == reason
    if pooling is not None:  # sentence-transformers refuses a pooling with no mode at all
        served = load_model(str(folder), device="cpu")
        assert type(served._model).__name__ == "SentenceTransformer"  # type: ignore[attr-defined]


def test_a_folder_without_modules_json_is_not_plain(tmp_path: Path) -> None:
    assert plain_chain_plan(tmp_path) == "no readable modules.json"
