"""Turn a model URI (MLflow `models:/`, `runs:/`, other artifact URIs, or a local path) into a model.

The MLflow client is imported only for registry URIs: a server started from local paths (the GPU
benchmark machine) needs no MLflow at all.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from inference.models.base import EmbeddingModel
from inference.models.bert_files import bert_plan
from inference.models.chain_plan import plain_chain_plan

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from inference.models.plain_chain import PlainChain
    from inference.models.weight_slots import WeightSlots

_REMOTE_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/", "s3://", "gs://", "wasbs://", "dbfs:/")


def resolve_model_dir(uri: str, tracking_uri: str | None = None) -> Path:
    """A local directory holding the model: the path itself, or the downloaded MLflow artifacts."""
    if uri.startswith(_REMOTE_SCHEMES):
        import mlflow.artifacts

        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri))
    path = Path(uri.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"model uri {uri!r}: no such directory")
    return path


def _sentence_transformer_dir(root: Path) -> Path:
    """The sentence-transformers folder inside a plain model dir or an MLflow model's artifacts."""
    if (root / "modules.json").is_file() or (root / "config.json").is_file():
        return root
    for candidate in sorted(root.rglob("modules.json")):
        return candidate.parent
    raise ValueError(f"{root}: not a sentence-transformers model (no modules.json)")


_CARD_DIMS = re.compile(r'"matryoshka_dims"\s*:\s*\[([0-9,\s]+)\]')


def matryoshka_dims(model_dir: Path) -> tuple[int, ...]:
    """The sizes a model was trained to be shortened to, from its own files; () when it was not.

    Read from `config_sentence_transformers.json` (`"matryoshka_dims": [...]`, canaryflow's field
    for it) or else from the model card sentence-transformers writes when a model is trained with
    MatryoshkaLoss (its loss parameters list `"matryoshka_dims"`). A model that says neither is
    served at its full size only: shortening a model not trained for it loses quality silently.
    """
    config = model_dir / "config_sentence_transformers.json"
    if config.is_file():
        dims = json.loads(config.read_text()).get("matryoshka_dims")
        if isinstance(dims, list) and dims and all(type(d) is int for d in dims):
            return tuple(dims)
    card = model_dir / "README.md"
    if card.is_file():
        found = _CARD_DIMS.search(card.read_text(errors="replace"))
        if found:
            return tuple(int(d) for d in found.group(1).replace(" ", "").split(",") if d.strip())
    return ()


def served_without_transformers(uri: str) -> bool:
    """Whether `load_model` serves `uri` with the plain-torch BERT encoder (no transformers import),
    decided from its local files without importing torch; False where it cannot be known here (a
    registry or remote URI, downloaded by the worker that loads it) or the files say otherwise."""
    if uri.startswith(_REMOTE_SCHEMES):
        return False
    try:
        model_dir = _sentence_transformer_dir(resolve_model_dir(uri))
    except (OSError, ValueError):
        return False
    plan = plain_chain_plan(model_dir)
    return not isinstance(plan, str) and not isinstance(bert_plan(plan[0]), str)


def load_model(
    uri: str,
    device: str = "cpu",
    dtype: str = "auto",
    tracking_uri: str | None = None,
    cuda_graphs: bool = True,
    capture_all: bool = False,
    gpu_streams: int = 1,
    slots: WeightSlots | None = None,
) -> EmbeddingModel:
    """Load a sentence-transformers model (the one kind served today) on `device`; with `slots`
    its weights stay in host memory until the cache binds it to a weight slot."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from inference.models.plain_chain import load_plain_chain
    from inference.models.sentence_transformer import SentenceTransformerModel

    model_dir = _sentence_transformer_dir(resolve_model_dir(uri, tracking_uri))
    # Loaded on the CPU first so that an fp16 serving copy never costs a transient fp32 GPU copy.
    # The plain chain spares the sentence-transformers import (most of a start-up); other chains
    # load through it.
    model: SentenceTransformer | PlainChain | None = load_plain_chain(model_dir)
    if model is None:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(model_dir), device="cpu")
    return SentenceTransformerModel(
        model, device, dtype, cuda_graphs, matryoshka_dims=matryoshka_dims(model_dir),
        capture_all=capture_all, gpu_streams=gpu_streams, slots=slots,
    )  # fmt: skip
