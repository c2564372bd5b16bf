"""Lazy registry of embedding backends: a backend's module is imported on first use only."""

from __future__ import annotations

import importlib

from evolve.embedders._base import Embedder
from evolve.errors import ConfigError, did_you_mean

__all__ = ["EMBEDDERS", "register_embedder", "get_embedder_class", "create_embedder"]

#: backend name -> "module:Class"
EMBEDDERS: dict[str, str] = {
    "sentence-transformers": "evolve.embedders._st:SentenceTransformerEmbedder",
    "vllm": "evolve.embedders._vllm:VLLMEmbedder",
    "openai": "evolve.embedders._openai:OpenAIEmbedder",
}


def register_embedder(name: str, target: str) -> None:
    EMBEDDERS[name] = target


def get_embedder_class(name: str) -> type[Embedder]:
    if name not in EMBEDDERS:
        raise ConfigError(
            f"embedding.backend: expected one of {', '.join(sorted(EMBEDDERS))}, got '{name}'{did_you_mean(name, EMBEDDERS)}"
        )
    module, _, cls = EMBEDDERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def create_embedder(config) -> Embedder:
    return get_embedder_class(config.backend)(config)
