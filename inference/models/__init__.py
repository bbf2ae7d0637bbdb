"""Model kinds the server can serve, behind the `EmbeddingModel` interface; `load_model` picks one."""

from inference.models.base import EmbeddingModel, TokenizedBatch
from inference.models.loader import load_model, resolve_model_dir

__all__ = ["EmbeddingModel", "TokenizedBatch", "load_model", "resolve_model_dir"]
