"""``--dataset`` resolution: a bundled name (``scifact``) or any folder/file in a supported format."""

from __future__ import annotations

from pathlib import Path

from evolve.config import shipped_path
from evolve.datasets._beir import is_beir, load_beir
from evolve.datasets._folder import is_plain_folder, load_folder
from evolve.datasets._squad import is_squad, load_squad
from evolve.datasets._types import Dataset
from evolve.errors import DatasetError, did_you_mean

__all__ = ["BUNDLED", "load_dataset", "bundled_path"]

#: Datasets shipped as package data (name -> folder under ``datasets/``).
BUNDLED = {"scifact": "scifact"}


def bundled_path(name: str) -> Path:
    return shipped_path("datasets", BUNDLED[name])


def load_dataset(spec: str | Path, *, strict: bool = False) -> Dataset:
    """Load a dataset by bundled name or path (BEIR folder, plain .md/.txt folder, or SQuAD-style JSON)."""
    spec_s = str(spec)
    if spec_s in BUNDLED:
        return load_beir(bundled_path(spec_s), name=spec_s, strict=strict)
    path = Path(spec_s).expanduser()
    if not path.exists():
        hint = did_you_mean(spec_s, BUNDLED)
        raise DatasetError(
            f"expected a bundled dataset name ({', '.join(BUNDLED)}) or an existing path, got '{spec_s}'{hint}"
        )
    if is_beir(path):
        return load_beir(path, strict=strict)
    if is_squad(path):
        return load_squad(path, strict=strict)
    if is_plain_folder(path):
        return load_folder(path, strict=strict)
    raise DatasetError(
        "expected a BEIR folder (corpus.jsonl), a folder of .md/.txt documents with queries and qrels, "
        "or a SQuAD-style .json file, got none of these",
        path=str(path),
    )
