"""Helpers shared by the transports: model folders, lengths, devices (no torch/vllm at import)."""

from __future__ import annotations

from pathlib import Path

from evolve._platform import cuda_visible
from evolve.errors import ConfigError, ModelNotFoundError

__all__ = ["default_dtype", "max_tokens", "model_folder", "torch_device"]


def model_folder(config) -> Path:
    """The local folder of ``rerank.model`` (a packaged name or a path; nothing is downloaded)."""
    if not config.model:
        raise ConfigError(f"rerank.model: expected a model name or path for rerank.transport '{config.transport}', got nothing")
    from evolve.embedders import resolve_model_path

    return resolve_model_path(config.model)


def max_tokens(config, path: Path) -> int:
    """``rerank.max_length`` capped at what the model allows (sentence-transformers' max_seq_length when the folder
    says one, else the position table)."""
    from evolve.embedders._folder import model_position_limit, read_json

    try:
        limit = read_json(path / "sentence_bert_config.json").get("max_seq_length")
    except ModelNotFoundError:
        limit = None
    if not isinstance(limit, int):
        limit = model_position_limit(path)
    return int(min(config.max_length, limit)) if isinstance(limit, int) and limit > 0 else int(config.max_length)


def torch_device() -> str:
    if not cuda_visible():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(config, device: str) -> str:
    return config.dtype or ("float16" if device.startswith("cuda") else "float32")


