"""``--dataset`` resolution: a bundled name (``scifact``), a dataset manifest (``team.yaml``), or a folder/file in a
format that needs no options (BEIR folder, SQuAD-style JSON, Notion export, plain .md/.txt folder)."""

from __future__ import annotations

from pathlib import Path

from evolve.config import shipped_path
from evolve.datasets._beir import has_qrels, is_beir, load_beir
from evolve.datasets._folder import is_plain_folder, load_folder
from evolve.datasets._manifest import is_manifest, load_manifest
from evolve.datasets._notion import is_notion_export, load_notion
from evolve.datasets._squad import is_squad, load_squad
from evolve.datasets._tickets import TICKET_SUFFIXES
from evolve.datasets._types import Dataset
from evolve.errors import DatasetError, did_you_mean

__all__ = ["BUNDLED", "load_dataset", "bundled_path"]

#: Datasets shipped as package data (name -> folder under ``datasets/``).
BUNDLED = {"scifact": "scifact"}


def bundled_path(name: str) -> Path:
    return shipped_path("datasets", BUNDLED[name])


def _has_queries(folder: Path) -> bool:
    return any((folder / n).is_file() for n in ("queries.jsonl", "queries.jsonl.gz", "queries.tsv", "queries.tsv.gz"))


def load_dataset(spec: str | Path, *, strict: bool = False) -> Dataset:
    """Load a dataset by bundled name or path: a manifest (``.yaml``), a BEIR folder, a SQuAD-style JSON, a Notion
    export (``.zip`` or unpacked folder), or a plain .md/.txt folder."""
    spec_s = str(spec)
    if spec_s in BUNDLED:
        return load_beir(bundled_path(spec_s), name=spec_s, strict=strict)
    path = Path(spec_s).expanduser()
    if not path.exists():
        hint = did_you_mean(spec_s, BUNDLED)
        raise DatasetError(
            f"expected a bundled dataset name ({', '.join(BUNDLED)}) or an existing path, got '{spec_s}'{hint}"
        )
    if is_manifest(path):
        return load_manifest(path, strict=strict)
    if is_beir(path):
        return load_beir(path, strict=strict)
    if is_squad(path):
        return load_squad(path, strict=strict)
    if path.is_file() and path.name.lower().endswith(TICKET_SUFFIXES):
        raise DatasetError("expected a dataset manifest naming this file's fields (format: tickets, fields: "
                           "{id: …, title: …, text: …}; see docs/datasets.md), got the records alone", path=str(path))
    if is_notion_export(path) and not (path.is_dir() and (_has_queries(path) or has_qrels(path))):
        return load_notion(path, strict=strict)
    if is_plain_folder(path):
        return load_folder(path, strict=strict)
    raise DatasetError(
        "expected a BEIR folder (corpus.jsonl), a folder of .md/.txt documents, a Notion export (.zip or folder), "
        "a SQuAD-style .json file or a dataset manifest (.yaml), got none of these",
        path=str(path),
    )
