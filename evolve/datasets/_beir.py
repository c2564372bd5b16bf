"""BEIR folder: ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]``, ``qrels/<split>.tsv``."""

from __future__ import annotations

from pathlib import Path

from evolve.datasets._common import finalize, find_file, read_corpus_jsonl, read_qrels_tsv, read_queries_jsonl
from evolve.datasets._types import Dataset
from evolve.errors import DatasetError

__all__ = ["is_beir", "load_beir", "read_qrels_folder"]


def is_beir(folder: Path) -> bool:
    return folder.is_dir() and find_file(folder, "corpus.jsonl") is not None


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


def load_beir(folder: Path, *, name: str | None = None, strict: bool = False) -> Dataset:
    corpus_path = find_file(folder, "corpus.jsonl")
    queries_path = find_file(folder, "queries.jsonl")
    if corpus_path is None:
        raise DatasetError("expected corpus.jsonl or corpus.jsonl.gz, got none", path=str(folder))
    if queries_path is None:
        raise DatasetError("expected queries.jsonl or queries.jsonl.gz, got none", path=str(folder))
    corpus = read_corpus_jsonl(corpus_path)
    queries = read_queries_jsonl(queries_path)
    qrels = read_qrels_folder(folder)
    return finalize(name or folder.name, str(folder), corpus, queries, qrels, strict=strict)
