"""What a model folder says about itself: pooling, position limit, normalisation, output size, tokenizer.

Read from the folder's JSON files (sentence-transformers layout); imports neither torch nor vllm. Shared by the
vLLM embedder and the rerankers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from evolve.errors import ConfigError, ModelNotFoundError

__all__ = ["load_tokenizer", "model_normalizes", "model_position_limit", "output_dim", "pooling_type", "read_json"]


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{path}: unreadable JSON ({exc})") from None


def pooling_type(path: str | os.PathLike) -> str | None:
    """vLLM's pooling type (MEAN, CLS, LAST) from a sentence-transformers folder; None when it says none."""
    path = Path(path)
    modules = read_json(path / "modules.json")
    folder = "1_Pooling"
    if isinstance(modules, list):
        for m in modules:
            if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling"):
                folder = m.get("path") or folder
    cfg = read_json(path / folder / "config.json")
    if not cfg:
        return None
    mode = cfg.get("pooling_mode")
    if isinstance(mode, str):
        modes = [mode]
    else:
        modes = [k.removeprefix("pooling_mode_") for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
    mapping = {"mean_tokens": "MEAN", "mean": "MEAN", "cls_token": "CLS", "cls": "CLS", "lasttoken": "LAST", "last": "LAST"}
    if len(modes) != 1 or modes[0] not in mapping:
        raise ConfigError(
            f"embedding.backend: 'vllm' supports mean, cls or last-token pooling, but {path} uses "
            f"{' + '.join(modes) or 'none'}; use backend 'sentence-transformers' for this model"
        )
    return mapping[modes[0]]


def model_position_limit(path: str | os.PathLike) -> int | None:
    """The longest input (tokens, specials included) the model's position table allows."""
    cfg = read_json(Path(path) / "config.json")
    mpe = cfg.get("max_position_embeddings")
    if not isinstance(mpe, int):
        return None
    if cfg.get("model_type") in {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer"}:
        mpe -= int(cfg.get("pad_token_id", 1) or 1) + 1  # positions start after the padding index
    return mpe


def model_normalizes(path: str | os.PathLike) -> bool:
    """Whether the sentence-transformers folder ends in a Normalize module (its vectors are always unit length)."""
    modules = read_json(Path(path) / "modules.json")
    return isinstance(modules, list) and any(
        isinstance(m, dict) and str(m.get("type", "")).endswith("Normalize") for m in modules
    )


def output_dim(path: Path) -> int | None:
    dim = None
    modules = read_json(path / "modules.json")
    if isinstance(modules, list):
        for m in modules:
            if isinstance(m, dict) and str(m.get("type", "")).endswith("Dense"):
                dim = read_json(path / m.get("path", "") / "config.json").get("out_features", dim)
    if dim is None:
        dim = read_json(path / "config.json").get("hidden_size")
    return int(dim) if dim else None


def load_tokenizer(path: str | os.PathLike, max_length: int):
    """A ``tokenizers.Tokenizer`` for the model folder: no padding, truncation to ``max_length`` (specials included)."""
    from tokenizers import Tokenizer

    path = Path(path)
    if (path / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    else:  # an older folder (vocab.txt only): let transformers build the fast tokenizer once
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(path), use_fast=True, local_files_only=True).backend_tokenizer
        except Exception as exc:  # noqa: BLE001 - any failure means: no usable tokenizer
            raise ModelNotFoundError(f"{path}: no tokenizer.json and no tokenizer transformers can load ({exc})") from None
    tok.no_padding()
    tok.enable_truncation(max_length=int(max_length))
    return tok
