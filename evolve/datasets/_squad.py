"""SQuAD-style JSON (e.g. KorQuAD) as a retrieval dataset, built at load time.

Every paragraph with at least one question is a document (``<article id>-<paragraph index>``, title = article
title); every question is a query whose one relevant document is its paragraph. Identical (title, paragraph)
pairs are merged into the first. The single qrels set is the split ``test``. Every ``answers[].text`` of a
question is kept as its reference answers (``Dataset.answers``: NFC, duplicates dropped, order kept).
"""

from __future__ import annotations

import json
from pathlib import Path

from evolve.datasets._common import Parts, finalize_parts, open_text
from evolve.datasets._types import Dataset, Document, clean_answers, nfc
from evolve.errors import DatasetError

__all__ = ["is_squad", "load_squad", "read_squad"]


def is_squad(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".json", ".json.gz"))


def read_squad(path: Path, *, source: str = "squad") -> Parts:
    try:
        with open_text(path) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise DatasetError(f"expected SQuAD-style JSON, got malformed JSON ({err.msg})", path=str(path), line=err.lineno) from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError("expected SQuAD-style JSON with a top-level 'data' list, got something else (tickets and "
                           "Zammad JSON need a dataset manifest: see docs/datasets.md)", path=str(path))
    corpus: dict[str, Document] = {}
    by_pair: dict[tuple[str, str], str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    answers: dict[str, list[str]] = {}
    for a_idx, article in enumerate(data["data"]):
        title = nfc(str(article.get("title") or ""))
        for p_idx, para in enumerate(article.get("paragraphs") or []):
            qas = para.get("qas") or []
            if not qas:
                continue
            context = nfc(str(para.get("context") or ""))
            first_qid = str(qas[0].get("id", ""))
            article_id = first_qid.split("-")[0] if "-" in first_qid else str(a_idx)
            doc_id = by_pair.get((title, context))
            if doc_id is None:
                doc_id = f"{article_id}-{p_idx}"
                if doc_id in corpus:
                    raise DatasetError(f"duplicate document id '{doc_id}' (article {a_idx}, paragraph {p_idx})", path=str(path))
                by_pair[(title, context)] = doc_id
                corpus[doc_id] = Document(doc_id, title, context, {"source": source})
            for qa in qas:
                qid = nfc(str(qa.get("id", "")))
                if not qid:
                    raise DatasetError(f"expected an 'id' on every question (article {a_idx}, paragraph {p_idx}), got none", path=str(path))
                if qid in queries:
                    raise DatasetError(f"duplicate question id '{qid}'", path=str(path))
                queries[qid] = nfc(str(qa.get("question") or ""))
                qrels[qid] = {doc_id: 1}
                refs = clean_answers(_answer_texts(qa))
                if refs:
                    answers[qid] = refs
    return Parts(corpus, queries, {"test": qrels}, answers=answers)


def _answer_texts(qa: dict) -> list[str]:
    """The ``answers[].text`` strings of one question (SQuAD v1.1 / KorQuAD 1.0), in file order."""
    items = qa.get("answers") or []
    if not isinstance(items, list):
        return []
    return [str(a["text"]) for a in items if isinstance(a, dict) and a.get("text") is not None]


def load_squad(path: Path, *, name: str | None = None, strict: bool = False) -> Dataset:
    stem = path.name.split(".json")[0]
    return finalize_parts(name or stem, str(path), read_squad(path), strict=strict)
