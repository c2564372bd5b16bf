"""A plain folder of ``.md``/``.txt`` documents with a queries file and qrels.

Layout::

    folder/
      docs/…/*.md|*.txt     documents (or directly in folder/); id = path relative to docs/, without suffix
      queries.jsonl | queries.tsv   (optional: without queries and qrels the folder is a corpus alone)
      qrels.tsv | qrels/<split>.tsv

A Markdown document whose first line is ``# Title`` gets that title; otherwise the title is empty.
``metadata["path"]`` is the document's folder (relative to docs/).
"""

from __future__ import annotations

from pathlib import Path

from evolve.datasets._beir import has_qrels, read_qrels_folder
from evolve.datasets._common import Parts, finalize_parts, find_file, read_queries_jsonl, read_queries_tsv
from evolve.datasets._types import Dataset, Document, nfc
from evolve.errors import DatasetError

__all__ = ["is_plain_folder", "load_folder", "read_folder"]

_SUFFIXES = {".md", ".txt"}
_RESERVED = {"readme", "queries", "qrels", "license"}


def _doc_files(folder: Path) -> tuple[Path, list[Path]]:
    root = folder / "docs" if (folder / "docs").is_dir() else folder
    files = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.suffix.lower() in _SUFFIXES
        and not (root == folder and p.parent == folder and p.stem.lower() in _RESERVED)
        and "qrels" not in p.relative_to(root).parts
    ]
    return root, files


def is_plain_folder(folder: Path) -> bool:
    return folder.is_dir() and bool(_doc_files(folder)[1])


def read_folder(folder: Path, *, source: str = "folder") -> Parts:
    root, files = _doc_files(folder)
    corpus: dict[str, Document] = {}
    origin: dict[str, Path] = {}
    for path in files:
        doc_id = nfc(path.relative_to(root).with_suffix("").as_posix())
        if doc_id in corpus:
            raise DatasetError(f"duplicate document id '{doc_id}' (also {origin[doc_id].name})", path=str(path))
        try:
            text = nfc(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise DatasetError(f"expected UTF-8 text, got undecodable bytes at offset {err.start}", path=str(path)) from None
        title = ""
        if path.suffix.lower() == ".md":
            first, _, rest = text.lstrip().partition("\n")
            if first.startswith("# "):
                title, text = first[2:].strip(), rest
        folder_path = nfc(path.parent.relative_to(root).as_posix())
        corpus[doc_id] = Document(doc_id, title, text.strip(),
                                  {"source": source, "path": "" if folder_path == "." else folder_path})
        origin[doc_id] = path
    qpath = find_file(folder, "queries.jsonl")
    if qpath is not None:
        queries = read_queries_jsonl(qpath)
    elif (qpath := find_file(folder, "queries.tsv")) is not None:
        queries = read_queries_tsv(qpath)
    elif not has_qrels(folder):
        return Parts(corpus)  # documents alone: gold comes from --gold
    else:
        raise DatasetError("expected queries.jsonl or queries.tsv beside the documents and qrels, got none",
                           path=str(folder))
    return Parts(corpus, queries, read_qrels_folder(folder))


def load_folder(folder: Path, *, name: str | None = None, strict: bool = False) -> Dataset:
    return finalize_parts(name or folder.name, str(folder), read_folder(folder), strict=strict)
