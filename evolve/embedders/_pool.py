"""Embedders kept alive across evaluations: one model load per process, shared by trials and rerankers."""

from __future__ import annotations

from evolve.embedders._base import Embedder
from evolve.embedders._registry import create_embedder

__all__ = ["EmbedderPool"]

#: embedding fields that decide which model instance is needed (prefixes, dim and batch size do not)
_MODEL_FIELDS = ("backend", "model", "dtype", "device", "max_length", "normalize", "gpu_memory_utilization",
                 "max_model_len", "devices", "base_url", "api_key_env")


class EmbedderPool:
    """Embedders kept alive across evaluations (one model load per process, shared by trials)."""

    def __init__(self):
        self._items: dict[tuple, Embedder] = {}

    def get(self, config) -> Embedder:
        key = tuple((f, repr(getattr(config, f))) for f in _MODEL_FIELDS)
        emb = self._items.get(key)
        if emb is None:
            emb = self._items[key] = create_embedder(config)
        emb.config = config  # batch size and similar per-call settings follow the current trial
        return emb

    def close(self) -> None:
        for emb in self._items.values():
            emb.close()
        self._items.clear()
