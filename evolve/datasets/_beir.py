"""BEIR folder: ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]``, ``qrels/<split>.tsv``.

A corpus alone (no queries, no qrels) is a corpus-only dataset; queries without qrels, or qrels without queries,
are an error."""

from __future__ import annotations

from pathlib import Path

from evolve.datasets._common import (
    Parts,
    finalize_parts,
    find_file,
    read_corpus_jsonl,
    read_qrels_tsv,
    read_queries_jsonl,
)
from evolve.datasets._types import Dataset
from evolve.errors import DatasetError

__all__ = ["is_beir", "load_beir", "read_beir", "read_qrels_folder", "has_qrels"]


def is_beir(folder: Path) -> bool:
    return folder.is_dir() and find_file(folder, "corpus.jsonl") is not None


def has_qrels(folder: Path) -> bool:
    qrels_dir = folder / "qrels"
    if find_file(folder, "qrels.tsv") is not None:
        return True
    return qrels_dir.is_dir() and (any(qrels_dir.glob("*.tsv")) or any(qrels_dir.glob("*.tsv.gz")))


def read_qrels_folder(folder: Path) -> dict[str, dict[str, dict[str, int]]]:
    """Splits are the qrels files' names: ``qrels/<split>.tsv``, or a single ``qrels.tsv`` named ``test``."""
    qrels_dir = folder / "qrels"
    files = sorted(qrels_dir.glob("*.tsv")) + sorted(qrels_dir.glob("*.tsv.gz")) if qrels_dir.is_dir() else []
    if files:
        return {p.name.split(".")[0]: read_qrels_tsv(p) for p in files}
    single = find_file(folder, "qrels.tsv")
    if single is not None:
        return {"test": read_qrels_tsv(single)}
    raise DatasetError("expected qrels/<split>.tsv or qrels.tsv, got none", path=str(folder))


def read_beir(folder: Path) -> Parts:
    corpus_path = find_file(folder, "corpus.jsonl")
    queries_path = find_file(folder, "queries.jsonl")
    if corpus_path is None:
        raise DatasetError("expected corpus.jsonl or corpus.jsonl.gz, got none", path=str(folder))
    corpus = read_corpus_jsonl(corpus_path)
    if queries_path is None and not has_qrels(folder):
        return Parts(corpus)  # a corpus alone: gold comes from --gold
    if queries_path is None:
        raise DatasetError("expected queries.jsonl or queries.jsonl.gz beside the qrels, got none", path=str(folder))
    return Parts(corpus, read_queries_jsonl(queries_path), read_qrels_folder(folder))


def load_beir(folder: Path, *, name: str | None = None, strict: bool = False) -> Dataset:
    return finalize_parts(name or folder.name, str(folder), read_beir(folder), strict=strict)
