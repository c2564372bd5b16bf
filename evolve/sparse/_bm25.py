"""BM25 over chunk texts, bm25s' Lucene scoring: tokenised once per (chunk texts, tokenizer), scored per (k1, b).

``k1`` and ``b`` are continuous search axes, so an index per (k1, b) on disk would grow by one every sparse trial
(about 0.5 GB at a million chunks). Instead the expensive part, tokenisation, is done once per chunk texts and
tokenizer and kept as :class:`TermStats`: the term-frequency matrix in term-major (CSC) order, document lengths
and the vocabulary, as numpy arrays (an ``.npz`` under ``<cache folder>/bm25/``, see
:class:`~evolve.cache.DerivedStore`: atomic, verified, bounded, removed by ``evolve cache prune``). A (k1, b)
pair turns those statistics into bm25s' score matrix in one vectorised pass (Lucene's BM25, exactly as
``bm25s.BM25(method="lucene").index`` computes it: same float64 arithmetic, same float32 result). Queries are
scored all at once by one sparse product (scipy), ranking only the documents that hold a query term. Scored
indexes live only in this process (an LRU bounded by bytes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from evolve._formats import BM25_VERSION
from evolve._lru import ByteLRU
from evolve.sparse._tokenizers import get_tokenizer

if TYPE_CHECKING:
    from evolve.cache import EmbeddingCache
    from evolve.config import SparseConfig

__all__ = ["BM25_VERSION", "STATS", "BM25Index", "TermStats", "bm25_key", "build_bm25", "clear_memory",
           "term_stats", "texts_digest"]

log = logging.getLogger("evolve.sparse")

#: bm25s scoring variant (Lucene's BM25, as in Anserini and the published bm25s numbers)
METHOD = "lucene"

#: how each index came to be in this process: ``built`` (the corpus was tokenised), ``disk`` (statistics loaded
#: from disk, then scored), ``scored`` (scored from statistics this process already held), ``memory`` (served
#: from the in-process LRU); ``tokenized`` counts corpus tokenisations
STATS = {"built": 0, "disk": 0, "scored": 0, "memory": 0, "tokenized": 0}

#: bytes of term statistics and of scored indexes kept in this process
STATS_MEMORY_BYTES = 2 * 2**30
INDEX_MEMORY_BYTES = 1 * 2**30
#: texts tokenised per block (bounds the memory of token lists at a million chunks)
_BLOCK = 20_000
#: postings scored per vectorised step (bounds the float64 temporaries)
_SCORE_BLOCK = 1 << 22

_stats_memory: ByteLRU = ByteLRU(lambda: STATS_MEMORY_BYTES)
_indexes: ByteLRU = ByteLRU(lambda: INDEX_MEMORY_BYTES)
_lock = threading.RLock()


def texts_digest(texts: list[str]) -> str:
    """sha256 over the chunk texts, in order (length-prefixed)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def bm25_key(texts_digest: str, tokenizer: str, k1: float, b: float) -> str:
    """sha256 over version, scoring method, tokenizer, k1, b and the digest of the chunk texts."""
    blob = json.dumps(
        {"v": BM25_VERSION, "method": METHOD, "tokenizer": tokenizer, "k1": float(k1), "b": float(b), "texts": texts_digest},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _stats_name(digest: str, tokenizer: str) -> str:
    return hashlib.sha256(f"{BM25_VERSION}\0{tokenizer}\0{digest}".encode()).hexdigest()[:40]


@dataclass
class TermStats:
    """Term frequencies of a tokenised corpus in term-major order: the documents holding term ``t`` are
    ``docs[indptr[t]:indptr[t + 1]]`` (ascending), with counts ``tf[...]``. ``doc_len`` counts every token of a
    document (repeats included), as bm25s does."""

    vocab: dict[str, int]
    indptr: np.ndarray  # int64, (V + 1,)
    docs: np.ndarray  # int32, (nnz,)
    tf: np.ndarray  # float32, (nnz,): exact counts
    doc_len: np.ndarray  # int64, (n_docs,)
    _idf: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_docs(self) -> int:
        return int(self.doc_len.shape[0])

    @property
    def nbytes(self) -> int:
        arrays = self.indptr.nbytes + self.docs.nbytes + self.tf.nbytes + self.doc_len.nbytes
        idf = self._idf.nbytes if self._idf is not None else self.tf.nbytes
        return arrays + idf + 100 * len(self.vocab)

    def posting_idf(self) -> np.ndarray:
        """Lucene idf of each posting's term, float32 (bm25s computes it in Python floats, then stores float32)."""
        if self._idf is None:
            df = np.diff(self.indptr)
            n = self.n_docs
            values, inverse = np.unique(df, return_inverse=True)
            per_value = np.array([math.log(1 + (n - int(d) + 0.5) / (int(d) + 0.5)) if d else 0.0 for d in values],
                                 dtype=np.float32)
            self._idf = np.repeat(per_value[inverse], df)
        return self._idf

    def scores(self, k1: float, b: float) -> np.ndarray:
        """bm25s' Lucene score of every posting for (k1, b), float32, in posting order."""
        out = np.empty(self.tf.shape[0], dtype=np.float32)
        if not out.size:
            return out
        l_avg = self.doc_len.mean()
        norm = k1 * ((1 - b) + b * self.doc_len / l_avg)  # float64 per document, as bm25s computes it per doc
        idf = self.posting_idf()
        for s in range(0, out.size, _SCORE_BLOCK):
            e = min(out.size, s + _SCORE_BLOCK)
            tf = self.tf[s:e].astype(np.float64)
            out[s:e] = idf[s:e] * (tf / (norm[self.docs[s:e]] + tf))
        return out

    # ------------------------------------------------------------------ building and storing
    @staticmethod
    def from_tokens(token_lists) -> TermStats:
        """Statistics of an iterable of token lists (one per document)."""
        import scipy.sparse as sp

        vocab: dict[str, int] = {}
        ids: list[int] = []
        parts: list[np.ndarray] = []
        lens: list[int] = []
        for toks in token_lists:
            lens.append(len(toks))
            ids.extend([vocab.setdefault(t, len(vocab)) for t in toks])
            if len(ids) > 1 << 20:  # a Python list of ids costs 8 bytes each: move them into int32 blocks
                parts.append(np.asarray(ids, dtype=np.int32))
                ids = []
        parts.append(np.asarray(ids, dtype=np.int32))
        n_docs = len(lens)
        doc_len = np.asarray(lens, dtype=np.int64)
        terms = np.concatenate(parts)
        del ids, parts
        docs = np.repeat(np.arange(n_docs, dtype=np.int32), doc_len)
        m = sp.csr_matrix((np.ones(terms.shape[0], dtype=np.float32), (terms, docs)), shape=(len(vocab), n_docs))
        m.sum_duplicates()  # counts per (term, doc), documents ascending within a term
        return TermStats(vocab, m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float32),
                         doc_len)

    def save(self, path) -> None:
        tokens = list(self.vocab)
        encoded = [t.encode("utf-8") for t in tokens]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        with open(path, "wb") as fh:
            np.savez(fh, indptr=self.indptr, docs=self.docs, tf=self.tf, doc_len=self.doc_len,
                     vocab_blob=np.frombuffer(b"".join(encoded), dtype=np.uint8), vocab_offsets=offsets)

    @staticmethod
    def load(path) -> TermStats:
        with np.load(path, allow_pickle=False) as z:
            blob = z["vocab_blob"].tobytes()
            offsets = z["vocab_offsets"].tolist()
            vocab = {blob[offsets[i] : offsets[i + 1]].decode("utf-8"): i for i in range(len(offsets) - 1)}
            stats = TermStats(vocab, z["indptr"], z["docs"], z["tf"], z["doc_len"])
        if stats.indptr.shape != (len(vocab) + 1,) or stats.docs.shape != stats.tf.shape:
            raise ValueError("inconsistent array shapes")
        return stats


class BM25Index:
    """BM25 over ``n_docs`` chunk texts for one (k1, b): the term -> document score matrix (bm25s' scores, term
    major) and the vocabulary. :meth:`search` returns chunk indices, best first."""

    def __init__(self, matrix, vocab: dict[str, int] | None, tokenizer: str, n_docs: int, key: str, source: str):
        self.matrix = matrix  # scipy CSR (V x n_docs), or None for an empty corpus
        self.vocab = vocab or {}
        self.tokenizer = tokenizer
        self.n_docs = n_docs
        self.key = key
        #: where this instance came from: 'built', 'disk', 'scored' or 'memory'
        self.source = source

    def search(self, query_texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` of shape ``(len(query_texts), k)``: float32 BM25 scores and int64 chunk indices.

        Rows are best first (ties: lower chunk index first); slots past the documents that match at least one
        query term are ``-1`` (score 0).

        A document's score is the sum of its scores for the query's terms (a repeated term counts each time),
        as in bm25s, but all queries are scored at once by one sparse product, and only the documents that hold
        a query term are ranked: bm25s scores every document for every query (a million-long array each).
        """
        import scipy.sparse as sp

        n_q = len(query_texts)
        k = int(k)
        scores = np.zeros((n_q, k), dtype=np.float32)
        ids = np.full((n_q, k), -1, dtype=np.int64)
        if n_q == 0 or k <= 0 or self.n_docs == 0 or self.matrix is None:
            return scores, ids
        rows, cols = [], []
        for i, toks in enumerate(get_tokenizer(self.tokenizer)(list(query_texts))):
            for t in toks:
                j = self.vocab.get(t)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        q = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_q, self.matrix.shape[0]))
        hits = (q @ self.matrix).tocsr()
        for i in range(n_q):
            lo, hi = hits.indptr[i], hits.indptr[i + 1]
            s, d = hits.data[lo:hi], hits.indices[lo:hi].astype(np.int64)
            keep = s > 0
            s, d = s[keep], d[keep]
            if len(s) > k:
                top = np.argpartition(-s, k - 1)[:k]
                s, d = s[top], d[top]
            order = np.lexsort((d, -s))
            scores[i, : len(order)] = s[order]
            ids[i, : len(order)] = d[order]
        return scores, ids

    def __repr__(self) -> str:
        return f"BM25Index({self.tokenizer}, n_docs={self.n_docs}, source={self.source})"


def _tokenized_blocks(texts: list[str], tokenizer: str):
    tok = get_tokenizer(tokenizer)
    for s in range(0, len(texts), _BLOCK):
        yield from tok(texts[s : s + _BLOCK])


def term_stats(texts: list[str], tokenizer: str, *, digest: str | None = None,
               cache: EmbeddingCache | None = None) -> tuple[TermStats, str]:
    """The statistics of ``texts`` under ``tokenizer`` and where they came from (``memory``, ``disk`` or
    ``built``): tokenised once per (texts, tokenizer) and kept in memory and, when the cache has a folder, on disk."""
    digest = digest or texts_digest(texts)
    key = (digest, tokenizer)
    with _lock:
        stats = _stats_memory.get(key)
    if stats is not None:
        return stats, "memory"
    store = cache.derived("bm25") if cache is not None else None
    name = _stats_name(digest, tokenizer)
    source = "disk"
    stats = None
    if store is not None:
        art = store.open(name)
        if art is not None:
            try:
                stats = TermStats.load(art.data)
                if stats.n_docs != len(texts):
                    stats = None
            except Exception as exc:  # verified bytes numpy refuses: rebuild
                log.warning("BM25 statistics %s unreadable (%s); rebuilding them", name, " ".join(str(exc).split())[:120])
                stats = None
    if stats is None:
        source = "built"
        stats = TermStats.from_tokens(_tokenized_blocks(texts, tokenizer))
        with _lock:
            STATS["tokenized"] += 1
        if store is not None and texts:
            meta = {"version": BM25_VERSION, "tokenizer": tokenizer, "n_docs": len(texts), "texts_sha256": digest}
            store.save(name, stats.save, meta, expected_bytes=stats.nbytes)
    with _lock:
        _stats_memory.put(key, stats, stats.nbytes)
    return stats, source


def _score_matrix(stats: TermStats, k1: float, b: float):
    """bm25s' Lucene score matrix for (k1, b), term-major, as scipy CSR; index arrays shared with ``stats``."""
    import scipy.sparse as sp

    indptr = stats.indptr.astype(np.int32) if stats.docs.shape[0] < 2**31 - 1 else stats.indptr
    docs = stats.docs if indptr.dtype == np.int32 else stats.docs.astype(np.int64)
    m = sp.csr_matrix((stats.scores(float(k1), float(b)), docs, indptr), shape=(len(stats.vocab), stats.n_docs),
                      copy=False)
    m.has_sorted_indices = True
    return m


def build_bm25(chunk_texts: list[str], cfg: SparseConfig, cache: EmbeddingCache | None = None, *,
               digest: str | None = None) -> BM25Index:
    """The BM25 index of ``chunk_texts`` for ``cfg`` (tokenizer, k1, b).

    Served from the per-process LRU when this process scored it before; else scored from the term statistics
    of these texts (held in memory, else loaded from ``<cache folder>/bm25/``, else tokenised and saved there).
    ``digest`` is :func:`texts_digest` of the texts when the caller already has it.
    """
    texts = chunk_texts if isinstance(chunk_texts, list) else list(chunk_texts)
    get_tokenizer(cfg.tokenizer)  # fail fast on an unknown name
    digest = digest or texts_digest(texts)
    key = bm25_key(digest, cfg.tokenizer, cfg.k1, cfg.b)
    with _lock:
        idx = _indexes.get(key)
        if idx is not None:
            STATS["memory"] += 1
            return BM25Index(idx.matrix, idx.vocab, idx.tokenizer, idx.n_docs, key, "memory")
    stats, got = term_stats(texts, cfg.tokenizer, digest=digest, cache=cache)
    source = {"memory": "scored", "disk": "disk", "built": "built"}[got]
    matrix = _score_matrix(stats, cfg.k1, cfg.b) if texts else None
    idx = BM25Index(matrix, stats.vocab, cfg.tokenizer, len(texts), key, source)
    with _lock:
        STATS[source] += 1
        _indexes.put(key, idx, stats.tf.nbytes)
    return idx


def clear_memory() -> None:
    """Forget the in-process indexes and statistics (the on-disk statistics stay)."""
    with _lock:
        _indexes.clear()
        _stats_memory.clear()
