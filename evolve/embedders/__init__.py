"""Embedding backends behind one base class, loaded lazily by name.

Importing this package needs neither torch, vllm, faiss, optuna, mlflow nor ranx: GPU hosts that run only
the embedding benchmark have none of the latter four.
"""

from evolve.embedders._base import Embedder
from evolve.embedders._models import resolve_model_path, weights_hash
from evolve.embedders._pool import EmbedderPool
from evolve.embedders._registry import EMBEDDERS, create_embedder, get_embedder_class, register_embedder

__all__ = [
    "EMBEDDERS",
    "Embedder",
    "EmbedderPool",
    "create_embedder",
    "get_embedder_class",
    "register_embedder",
    "resolve_model_path",
    "weights_hash",
]
