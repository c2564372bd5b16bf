"""The chunk-level step: per query, the top documents AND the chunks behind them, with each first-stage
retriever's raw score. One path for serving and for evaluation (:meth:`evolve.pipeline.Pipeline.retrieve_passages`
takes query texts, from a person or from a dataset).

Rules:

* A document's chunks are the ones the first stage retrieved for the query (within the depth searched, as the
  ranking itself saw them), from either retriever. Each carries the raw first-stage scores it got: ``dense``
  (the faiss inner product: the cosine when ``embedding.normalize`` is on, the default) and ``sparse`` (BM25),
  before fusion. Fused scores are rank-based or min-max per query and say nothing absolute; these do.
* A document appears once. Its passage (:meth:`RetrievedDoc.passage`) is the whole document text (without the
  title, shown apart) when the pipeline does not chunk; otherwise its retrieved chunks in document order, joined
  by a space where they are neighbours in the document (the text two neighbours share under ``chunking.overlap``
  written once) and by `` … `` where chunks between them were not retrieved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ChunkHit", "Retrieval", "RetrievedDoc", "collect_passages", "merge_chunks"]

#: first-stage retriever names, as they appear in :attr:`ChunkHit.scores`
DENSE, SPARSE = "dense", "sparse"


@dataclass(frozen=True)
class ChunkHit:
    """One retrieved chunk: its position in its document, its text, and its raw first-stage score per retriever
    that found it (``{"dense": 0.61, "sparse": 7.2}``)."""

    index: int
    text: str
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class RetrievedDoc:
    """One of a query's top documents: rank (1-based), final score (fused, reranked: for ordering only) and the
    retrieved chunks behind it, in document order."""

    doc_id: str
    rank: int
    score: float
    chunks: list[ChunkHit]
    chunked: bool
    overlap: bool = False

    def raw_score(self, retriever: str) -> float | None:
        """The best raw first-stage score of ``retriever`` among the document's chunks (None: it found none)."""
        vals = [c.scores[retriever] for c in self.chunks if retriever in c.scores]
        return max(vals) if vals else None

    def passage(self, document) -> str:
        """The text given for this document (see the module's rules); ``document`` is its
        :class:`~evolve.datasets.Document`."""
        if not self.chunked:
            return document.text
        return merge_chunks([(c.index, c.text) for c in self.chunks], dedupe_overlap=self.overlap)


@dataclass
class Retrieval:
    """One query's top documents with their chunks, and what made them: the first-stage retrievers the pipeline
    ran (``("dense",)``, ``("sparse",)`` or both) and whether it chunks."""

    docs: list[RetrievedDoc]
    retrievers: tuple[str, ...]
    chunked: bool

    def raw_score(self, retriever: str) -> float | None:
        vals = [s for d in self.docs if (s := d.raw_score(retriever)) is not None]
        return max(vals) if vals else None


def _shared(prev: str, cur: str) -> int:
    """Length of the longest prefix of ``cur`` that ``prev`` ends with, cut at word boundaries on both sides."""
    best = 0
    for i in range(1, min(len(prev), len(cur)) + 1):
        if i < len(cur) and not cur[i].isspace():
            continue
        if prev.endswith(cur[:i]) and (len(prev) == i or prev[-i - 1].isspace()):
            best = i
    return best


def merge_chunks(chunks: list[tuple[int, str]], *, dedupe_overlap: bool = False) -> str:
    """One text from ``(index, text)`` chunks of one document: in index order, neighbours joined by a space (with
    ``dedupe_overlap``, the words the previous chunk ends with and this one starts with written once), gaps
    marked `` … ``."""
    parts: list[str] = []
    prev_index, prev_text = None, ""
    for index, text in sorted(chunks):
        text = text.strip()
        if prev_index is None:
            parts.append(text)
        elif index == prev_index + 1:
            cut = _shared(prev_text, text) if dedupe_overlap else 0
            rest = text[cut:].strip()
            if rest:
                parts.append(" " + rest)
        else:
            parts.append(" … " + text)
        prev_index, prev_text = index, text
    return "".join(parts)


def collect_passages(ranked: dict[str, float], hits: dict[str, tuple[np.ndarray, np.ndarray]], k: int, *,
                     chunks, chunk_doc: np.ndarray, doc_ids: list[str], chunked: bool,
                     overlap: bool) -> list[RetrievedDoc]:
    """The best ``k`` documents of ``ranked`` (doc id -> final score) with the chunks behind them, from one query's
    first-stage ``hits`` (retriever -> (scores, chunk ids), ``-1`` past the hits)."""
    top = sorted(ranked.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    pos = {d: i for i, (d, _) in enumerate(top)}
    found: list[dict[int, dict[str, float]]] = [{} for _ in top]
    for retriever, (scores, ids) in hits.items():
        valid = ids >= 0
        for c, s in zip(ids[valid].tolist(), np.asarray(scores)[valid].tolist()):
            slot = pos.get(doc_ids[int(chunk_doc[c])])
            if slot is None:
                continue
            got = found[slot].setdefault(int(c), {})
            got[retriever] = max(float(s), got.get(retriever, float("-inf")))
    out = []
    for i, (doc_id, score) in enumerate(top):
        hits_of_doc = sorted(found[i].items(), key=lambda kv: chunks[kv[0]].index)
        out.append(RetrievedDoc(doc_id, i + 1, float(score),
                                [ChunkHit(chunks[c].index, chunks[c].text, sc) for c, sc in hits_of_doc],
                                chunked, overlap))
    return out
