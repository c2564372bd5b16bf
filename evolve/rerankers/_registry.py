"""Lazy registry of rerank transports: a transport's module is imported on first use only."""

from __future__ import annotations

import importlib

from evolve.errors import ConfigError, did_you_mean

__all__ = ["RERANKERS", "get_reranker_class", "register_reranker", "transport_names"]

#: transport name -> "module:Class"
RERANKERS: dict[str, str] = {
    "cross-encoder": "evolve.rerankers._cross_encoder:CrossEncoderReranker",
    "vllm": "evolve.rerankers._vllm:VLLMReranker",
    "openai-rerank": "evolve.rerankers._openai:OpenAIReranker",
    "bi-encoder": "evolve.rerankers._bi_encoder:BiEncoderReranker",
}


def register_reranker(name: str, target: str) -> None:
    """Add a transport: ``target`` is ``"package.module:Class"`` (a :class:`Reranker` subclass)."""
    RERANKERS[name] = target


def transport_names() -> list[str]:
    """Every valid ``rerank.transport`` value ('none' first)."""
    return ["none", *RERANKERS]


def get_reranker_class(name: str):
    if name not in RERANKERS:
        names = transport_names()
        raise ConfigError(
            f"rerank.transport: expected one of {', '.join(names)}, got '{name}'{did_you_mean(name, names)}"
        )
    module, _, cls = RERANKERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
