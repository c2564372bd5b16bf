"""Shared reading helpers: JSONL (plain or gzipped) with file:line errors, qrels TSV, dropping dangling input."""

from __future__ import annotations

import gzip
import json
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from evolve.datasets._types import Dataset, Document, nfc
from evolve.errors import DatasetError

__all__ = [
    "open_text",
    "read_jsonl",
    "read_corpus_jsonl",
    "read_queries_jsonl",
    "read_queries_tsv",
    "read_qrels_tsv",
    "qrels_fields",
    "finalize",
    "finalize_parts",
    "find_file",
    "drop_dangling",
    "nfc_all",
    "Parts",
]


def find_file(folder: Path, stem: str) -> Path | None:
    for suffix in ("", ".gz"):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def nfc_all(value):
    """NFC every string in a JSON value (metadata from exports)."""
    if isinstance(value, str):
        return nfc(value)
    if isinstance(value, list):
        return [nfc_all(v) for v in value]
    if isinstance(value, dict):
        return {nfc(str(k)): nfc_all(v) for k, v in value.items()}
    return value


def open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object); a malformed line is a hard error naming file and line."""
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DatasetError(
                        f"expected one JSON object per line, got malformed JSON ({err.msg})", path=str(path), line=lineno
                    ) from None
                if not isinstance(obj, dict):
                    raise DatasetError(
                        f"expected a JSON object, got {type(obj).__name__}", path=str(path), line=lineno
                    )
                yield lineno, obj
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DatasetError(f"expected a readable UTF-8 JSONL file, got {type(err).__name__}: {err}", path=str(path)) from None


def read_corpus_jsonl(path: Path) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    seen_line: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        doc_id = obj.get("_id", obj.get("id"))
        if doc_id is None:
            raise DatasetError("expected an '_id' field in every document, got none", path=str(path), line=lineno)
        doc_id = nfc(str(doc_id))
        if doc_id in seen_line:
            raise DatasetError(
                f"duplicate document id '{doc_id}' (first seen on line {seen_line[doc_id]})", path=str(path), line=lineno
            )
        seen_line[doc_id] = lineno
        corpus[doc_id] = Document(doc_id, nfc(str(obj.get("title") or "")), nfc(str(obj.get("text") or "")))
    return corpus


def read_queries_jsonl(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    seen_line: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        qid = obj.get("_id", obj.get("id"))
        if qid is None:
            raise DatasetError("expected an '_id' field in every query, got none", path=str(path), line=lineno)
        qid = nfc(str(qid))
        if qid in seen_line:
            raise DatasetError(
                f"duplicate query id '{qid}' (first seen on line {seen_line[qid]})", path=str(path), line=lineno
            )
        seen_line[qid] = lineno
        queries[qid] = nfc(str(obj.get("text") or ""))
    return queries


def read_queries_tsv(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    seen_line: dict[str, int] = {}
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t", 1)
            if len(parts) != 2:
                raise DatasetError("expected 'query-id<TAB>text', got a line without a tab", path=str(path), line=lineno)
            qid = nfc(parts[0].strip())
            if qid in seen_line:
                raise DatasetError(
                    f"duplicate query id '{qid}' (first seen on line {seen_line[qid]})", path=str(path), line=lineno
                )
            seen_line[qid] = lineno
            queries[qid] = nfc(parts[1])
    return queries


def _relevance(raw: str) -> int | None:
    """An integer grade (``1``, or ``1.0`` as some exporters write it); None for ``0.5``, ``nan``, ``inf``, ``x``."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


_QRELS_HEADER = {"query-id", "query_id", "qid", "query"}


def qrels_fields(line: str) -> list[str] | None:
    """The columns of one qrels line, as BEIR's own loader reads them: split on tabs only (a document id may hold
    spaces: ``finance - report.pdf - 4``). A line without a tab is TREC's ``qid 0 docid rel``, split on
    whitespace. None for a blank line."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    if "\t" in text:
        return text.split("\t")
    return text.split()


def read_qrels_tsv(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels (``query-id<TAB>corpus-id<TAB>score``, a header allowed) or TREC qrels (``qid 0 docid rel``).

    Tab-separated lines are BEIR's (3 columns) or TREC's (4); only a line without any tab is split on whitespace,
    and then it must be TREC's 4 columns. Ids are kept exactly as written (spaces, Hangul), the score may be
    padded."""
    qrels: dict[str, dict[str, int]] = {}
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            parts = qrels_fields(line)
            if parts is None:
                continue
            tabbed = "\t" in line
            if lineno == 1 and parts[0].strip().lower() in _QRELS_HEADER:
                continue
            if tabbed and len(parts) == 3:
                qid, did, rel = parts
            elif len(parts) == 4:
                qid, _, did, rel = parts
            else:
                how = "tab" if tabbed else "whitespace"
                raise DatasetError(
                    "expected 3 columns (query-id<TAB>corpus-id<TAB>score, tab-separated as BEIR writes them) or 4 "
                    f"(TREC qid 0 docid rel), got {len(parts)} {how}-separated column(s)",
                    path=str(path),
                    line=lineno,
                )
            score = _relevance(rel.strip())
            if score is None:
                raise DatasetError(f"expected an integer relevance, got '{rel.strip()}'", path=str(path), line=lineno)
            qid, did = nfc(qid), nfc(did)
            if did in qrels.get(qid, {}):
                raise DatasetError(f"duplicate judgement for query '{qid}' and document '{did}'", path=str(path), line=lineno)
            qrels.setdefault(qid, {})[did] = score
    return qrels


def _preview(items: list[str], n: int = 3) -> str:
    shown = ", ".join(repr(i) for i in items[:n])
    return shown + (", ..." if len(items) > n else "")


@dataclass
class Parts:
    """What a reader found before :func:`finalize`: documents, queries, qrels per split, and ``notes`` (one line per
    kind of input it skipped: warnings, or errors under ``--strict``). Several sources of a manifest merge their
    parts and are finalised once."""

    corpus: dict[str, Document]
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: query id -> reference answer strings (SQuAD-style sets)
    answers: dict[str, list[str]] = field(default_factory=dict)


def drop_dangling(
    qrels: dict[str, dict[str, int]], queries: Container[str], corpus: Container[str], *, label: str
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Judgements whose query or document is unknown, dropped: ``(kept, messages)``, one message per kind.

    ``label`` starts each message (``"split 'test'"``, ``"gold folder /x"``). A query left with no judgement is
    dropped too. Used by :func:`finalize` for a dataset's own qrels, and by gold readers for gold that points at
    documents deleted since (a page removed from the Notion export)."""
    unknown_q = sorted(q for q in qrels if q not in queries)
    unknown_d = sorted({d for q, docs in qrels.items() if q in queries for d in docs if d not in corpus})
    messages = []
    if unknown_q:
        messages.append(f"{label}: dropped qrels of {len(unknown_q)} unknown quer(y/ies): {_preview(unknown_q)}")
    if unknown_d:
        messages.append(f"{label}: dropped qrels pointing at {len(unknown_d)} unknown document(s): {_preview(unknown_d)}")
    kept = {q: {d: r for d, r in docs.items() if d in corpus} for q, docs in qrels.items() if q in queries}
    return {q: docs for q, docs in kept.items() if docs}, messages


def finalize(
    name: str,
    source: str,
    corpus: dict[str, Document],
    queries: dict[str, str],
    qrels: dict[str, dict[str, dict[str, int]]],
    *,
    strict: bool = False,
    notes: list[str] | None = None,
    answers: dict[str, list[str]] | None = None,
) -> Dataset:
    """Drop empty documents and dangling qrels (warnings; errors with ``strict``). ``notes`` are the reader's own
    warnings (rows without a page, ...), reported first. Empty ``qrels`` is a corpus-only dataset (gold comes from
    ``--gold``); a split that is present must keep at least one judgement. ``answers`` (query id -> reference
    answers) are kept for the queries that are kept."""
    warnings: list[str] = []

    def report(msg: str) -> None:
        if strict:
            raise DatasetError(f"{msg} (--strict makes this an error)", path=source)
        warnings.append(msg)

    for note in notes or []:
        report(note)
    empty = [d for d, doc in corpus.items() if not doc.full_text.strip()]
    if empty:
        report(f"dropped {len(empty)} empty document(s): {_preview(empty)}")
        corpus = {d: doc for d, doc in corpus.items() if d not in set(empty)}
    empty_q = [q for q, t in queries.items() if not t.strip()]
    if empty_q:
        report(f"dropped {len(empty_q)} empty quer(y/ies): {_preview(empty_q)}")
        queries = {q: t for q, t in queries.items() if q not in set(empty_q)}

    clean: dict[str, dict[str, dict[str, int]]] = {}
    for split, sq in qrels.items():
        kept, messages = drop_dangling(sq, queries, corpus, label=f"split '{split}'")
        for msg in messages:
            report(msg)
        if not kept:
            raise DatasetError(f"split '{split}' has no usable judgements left: expected at least one", path=source)
        clean[split] = kept
    if not corpus:
        raise DatasetError("expected at least one non-empty document, got none", path=source)
    kept_answers = {q: list(a) for q, a in (answers or {}).items() if q in queries and a}
    return Dataset(name, source, corpus, queries, clean, warnings, kept_answers)


def finalize_parts(name: str, source: str, parts: Parts, *, strict: bool = False) -> Dataset:
    return finalize(name, source, parts.corpus, parts.queries, parts.qrels, strict=strict, notes=parts.notes,
                    answers=parts.answers)
