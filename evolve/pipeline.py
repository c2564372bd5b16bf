"""One retrieval pipeline, end to end: chunk -> embed (cached) -> index -> retrieve -> fuse/rerank -> score."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evolve._lru import ByteLRU
from evolve.cache import CacheStats, EmbeddingCache, cache_keys, keys_fingerprint
from evolve.chunking import Chunk, chunk_corpus
from evolve.config import PipelineConfig, config_to_yaml
from evolve.datasets import Dataset
from evolve.embedders import Embedder, EmbedderPool
from evolve.evaluate import DEFAULT_METRICS, evaluate_run, write_trec_run
from evolve.progress import ProgressFactory, null_progress

__all__ = ["ChunkSet", "Pipeline", "Evaluation", "chunk_set", "clear_chunk_memo", "evaluate_config"]

log = logging.getLogger("evolve.pipeline")


# ---------------------------------------------------------------------------------------------- chunks, once a night
@dataclass
class ChunkSet:
    """A corpus cut by one chunking config, with what every trial on it needs: the chunk -> document map, the
    chunk texts and their digest (BM25), and the cache keys of the chunk vectors per embedder identity and
    prefix. Built once per (corpus, chunking config, tokenizer) in a process (:func:`chunk_set`) and shared by
    every trial of a night, so a trial neither re-chunks nor re-hashes a million chunks."""

    chunks: list[Chunk]
    doc_ids: list[str]
    chunk_doc: np.ndarray
    _digest: str | None = field(default=None, repr=False)
    _keys: dict = field(default_factory=dict, repr=False)

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.chunks]

    @property
    def digest(self) -> str:
        """sha256 of the chunk texts in order (names the BM25 statistics)."""
        if self._digest is None:
            from evolve.sparse import texts_digest

            self._digest = texts_digest(self.texts)
        return self._digest

    def doc_keys(self, identity: str, prefix: str) -> tuple[list[bytes], int]:
        """Cache keys of the chunks' document vectors (``prefix`` + text) for an embedder identity, and how many
        of them are distinct (chunks with the same text share a key)."""
        memo = (identity, prefix)
        got = self._keys.get(memo)
        if got is None:
            keys = cache_keys(identity, "document", [prefix + c.text for c in self.chunks])
            got = (keys, len(set(keys)))
            while len(self._keys) >= 4:
                self._keys.pop(next(iter(self._keys)))
            self._keys[memo] = got
        return got

    @property
    def nbytes(self) -> int:
        return sum(len(c.text) for c in self.chunks) + 200 * len(self.chunks)


#: chunk sets kept in this process (the most recent always stays)
CHUNK_MEMORY_BYTES = 2 * 2**30
_CHUNK_SETS: ByteLRU = ByteLRU(lambda: CHUNK_MEMORY_BYTES)


def clear_chunk_memo() -> None:
    _CHUNK_SETS.clear()


def chunk_set(dataset: Dataset, chunking, model: str) -> ChunkSet:
    """The chunks of ``dataset``'s corpus under ``chunking`` (sizes in ``model``'s tokens), memoised per
    (corpus fingerprint, chunking config, tokenizer) and document order."""
    memo = (dataset.corpus_fingerprint(), chunking.model_dump_json(), model if chunking.strategy != "none" else None)
    doc_ids = list(dataset.corpus)
    cs = _CHUNK_SETS.get(memo)
    if cs is not None and cs.doc_ids == doc_ids:
        return cs
    chunks = chunk_corpus(dataset.corpus, chunking, model)
    pos = {d: i for i, d in enumerate(doc_ids)}
    chunk_doc = np.fromiter((pos[c.doc_id] for c in chunks), dtype=np.int64, count=len(chunks))
    cs = ChunkSet(chunks, doc_ids, chunk_doc)
    _CHUNK_SETS.put(memo, cs, cs.nbytes)
    return cs


@dataclass
class Evaluation:
    """The outcome of one pipeline on one set of queries."""

    config: PipelineConfig
    dataset: str
    split: str | None
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    run: dict[str, dict[str, float]]
    dataset_fingerprint: str
    corpus_fingerprint: str
    cache: CacheStats
    n_docs: int
    n_chunks: int
    retrieve_seconds: float = 0.0
    rerank_seconds: float = 0.0
    total_seconds: float = 0.0
    provenance: dict = field(default_factory=dict)

    @property
    def n_queries(self) -> int:
        return len({q for values in self.per_query.values() for q in values})

    @property
    def latency_ms(self) -> float:
        """Per-query retrieve-plus-rerank time on warm caches (query embedding excluded)."""
        n = max(1, self.n_queries)
        return 1000.0 * (self.retrieve_seconds + self.rerank_seconds) / n

    def summary(self) -> dict:
        return {
            "metrics": {k: round(v, 6) for k, v in self.metrics.items()},
            "n_queries": self.n_queries,
            "dataset": self.dataset,
            "split": self.split,
            "dataset_fingerprint": self.dataset_fingerprint,
            "corpus_fingerprint": self.corpus_fingerprint,
            "config_fingerprint": self.config.fingerprint(),
            "n_docs": self.n_docs,
            "n_chunks": self.n_chunks,
            "embed_seconds": round(self.cache.embed_seconds, 4),
            "cache_hit_rate": round(self.cache.hit_rate, 6),
            "n_embedded": self.cache.n_embedded,
            "retrieve_seconds": round(self.retrieve_seconds, 4),
            "rerank_seconds": round(self.rerank_seconds, 4),
            "latency_ms": round(self.latency_ms, 4),
            "total_seconds": round(self.total_seconds, 4),
            "provenance": self.provenance,
            **self._context_summary(),
        }

    def _context_summary(self) -> dict:
        """For ``context_recall@T`` metrics: which local tokenizer counted, the passage cap, and how many queries
        had a reference answer (only they are scored)."""
        from evolve.answer.metrics._context import context_metric_budget, context_settings

        names = [m for m in self.metrics if context_metric_budget(m) is not None]
        if not names:
            return {}
        scored = {q for m in names for q in self.per_query.get(m, {})}
        return {"context_recall": {**context_settings(self.config.answer), "n_queries": len(scored)}}

    def per_query_table(self) -> str:
        """One line per query; a metric a query has no value for (``context_recall`` without a reference
        answer) shows ``-``."""
        from evolve.evaluate import per_query_lines

        return per_query_lines(self.per_query)

    def write(self, out_dir: str | Path) -> Path:
        """metrics.json, per_query.tsv, run.trec and config.yaml, each written atomically."""
        from evolve._io import atomic_write_json, atomic_write_text

        out = Path(out_dir)
        atomic_write_json(out / "metrics.json", self.summary())
        atomic_write_text(out / "per_query.tsv", self.per_query_table())
        write_trec_run(self.run, out / "run.trec")
        atomic_write_text(out / "config.yaml", config_to_yaml(self.config))
        return out


class Pipeline:
    """A pipeline bound to one dataset's corpus. Build once (:meth:`prepare`), then retrieve in batches."""

    def __init__(
        self,
        config: PipelineConfig,
        dataset: Dataset,
        *,
        cache: EmbeddingCache | None = None,
        embedders: EmbedderPool | None = None,
        progress: ProgressFactory = null_progress,
        seed: int = 0,
    ):
        self.config = config
        self.dataset = dataset
        self.cache = cache if cache is not None else EmbeddingCache(None)
        self._own_pool = embedders is None
        self.embedders = embedders or EmbedderPool()
        self.progress = progress
        self.seed = seed
        self.stats = CacheStats()
        self.retrieve_seconds = 0.0
        self.rerank_seconds = 0.0
        self.chunks: list[Chunk] = []
        self._chunk_doc: np.ndarray | None = None
        self._doc_ids: list[str] = []
        self._index = None
        self._qvecs: dict[str, np.ndarray] = {}
        self._sparse = None
        self._chunk_set: ChunkSet | None = None
        self._prepared = False
        self._adhoc_cache: EmbeddingCache | None = None

    # ------------------------------------------------------------------ building
    @property
    def uses_dense(self) -> bool:
        return self.config.retrieval.mode in ("dense", "hybrid")

    @property
    def uses_sparse(self) -> bool:
        return self.config.retrieval.mode in ("sparse", "hybrid")

    def _embedder(self) -> Embedder:
        return self.embedders.get(self.config.embedding)

    def _embed(self, texts: list[str], kind: str, label: str, keys: list[bytes] | None = None, *,
               cache: EmbeddingCache | None = None) -> np.ndarray:
        with self.progress(label, len(texts)) as advance:
            vecs, stats = (cache or self.cache).embed(self._embedder(), texts, kind, progress=advance, keys=keys)
        self.stats.add(stats)
        return self._shape(vecs)

    def _shape(self, vecs: np.ndarray) -> np.ndarray:
        """Truncate to ``embedding.dim`` (Matryoshka) and re-normalise; full vectors stay in the cache."""
        dim = self.config.embedding.dim
        if dim is not None and dim < vecs.shape[1]:
            vecs = vecs[:, :dim]
            if self.config.embedding.normalize:
                norms = np.linalg.norm(vecs, axis=1, keepdims=True)
                vecs = vecs / np.maximum(norms, 1e-12)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def prepare(self) -> Pipeline:
        if self._prepared:
            return self
        cfg = self.config
        cs = chunk_set(self.dataset, cfg.chunking, cfg.embedding.model)
        self._chunk_set = cs
        self.chunks = cs.chunks
        self._doc_ids = cs.doc_ids
        self._chunk_doc = cs.chunk_doc
        if self.uses_dense:
            self._index = self._dense_index(cs)
        if self.uses_sparse:
            self._sparse = self._build_sparse()
        self._prepared = True
        return self

    def _dense_index(self, cs: ChunkSet):
        """The faiss index over the chunk vectors. It is named by the vectors' cache keys, so an index this
        process or the cache folder already holds is served without reading a vector, once the cache confirms
        it still holds them all (then they count as cache hits). Without a cache every vector is embedded."""
        from evolve.index import get_index

        cfg = self.config
        prefix = cfg.embedding.doc_prefix
        keys, n_distinct = cs.doc_keys(self._embedder().identity(), prefix)
        fp = f"{keys_fingerprint(keys)}:dim={cfg.embedding.dim}:normalize={cfg.embedding.normalize}"
        read: list[bool] = []

        def vectors() -> np.ndarray:
            read.append(True)
            return self._embed([prefix + c.text for c in cs.chunks], "document", "embedding chunks", keys=keys)

        build = {"config": cfg.index, "n": len(keys), "seed": self.seed, "store": self.cache.derived("faiss"),
                 "model": cfg.embedding.model}
        if not self.cache.enabled:
            vecs = vectors()
            return get_index(fp, vectors=lambda: vecs, **build)
        index = get_index(fp, vectors=vectors, **build)
        if read:  # every vector was just read (or embedded and stored): the cache holds them all today
            self.cache.remember_present(fp, n_distinct)
        else:
            present = self.cache.touch(keys, memo=fp)
            if present == n_distinct:
                self.stats.add(CacheStats(n_texts=len(keys), n_hits=len(keys)))
            else:  # vectors pruned or invalidated since the index was built: embed what is missing, rebuild
                log.info("index %s: the cache lacks %d of its vectors; rebuilding it", fp[:16], n_distinct - present)
                index = get_index(fp, vectors=vectors, reuse=False, **build)
        return index

    def _build_sparse(self):
        from evolve.sparse import build_bm25

        cs = self._chunk_set
        return build_bm25(cs.texts, self.config.sparse, cache=self.cache, digest=cs.digest)

    @property
    def adhoc_cache(self) -> EmbeddingCache:
        """Where the vectors of ad-hoc query texts (:meth:`search_texts`: what people type into a server) go:
        memory only, bounded (:class:`~evolve.cache.MemoryStore`), never the persistent cache."""
        if self._adhoc_cache is None:
            from evolve.cache import MemoryStore

            self._adhoc_cache = EmbeddingCache(MemoryStore())
        return self._adhoc_cache

    # ------------------------------------------------------------------ retrieval
    def embed_queries(self, qids: list[str]) -> None:
        todo = [q for q in qids if q not in self._qvecs]
        if not todo or not self.uses_dense:
            return
        prefix = self.config.embedding.query_prefix
        vecs = self._embed([prefix + self.dataset.queries[q] for q in todo], "query", "embedding queries")
        for q, v in zip(todo, vecs):
            self._qvecs[q] = v

    def _aggregate(self, scores: np.ndarray, ids: np.ndarray, k: int) -> dict[str, float]:
        """The best ``k`` documents of one query's chunk hits (``ids`` best first, ``-1`` = no hit).

        ``retrieval.aggregation`` over the retrieved chunks of each document (those within the depth searched,
        see :meth:`_search_deep`): ``max`` (the document's best chunk), ``sum`` or ``mean`` of their scores.
        Ties keep the order in which the documents first appear in the hits.
        """
        valid = ids >= 0
        if not valid.any():
            return {}
        docs = self._chunk_doc[ids[valid]]
        vals = np.asarray(scores[valid], dtype=np.float64)
        uniq, first, inv = np.unique(docs, return_index=True, return_inverse=True)
        agg = self.config.retrieval.aggregation
        if agg == "max":
            doc_scores = np.full(uniq.size, -np.inf)
            np.maximum.at(doc_scores, inv, vals)
        else:
            doc_scores = np.bincount(inv, weights=vals, minlength=uniq.size)
            if agg == "mean":
                doc_scores = doc_scores / np.bincount(inv, minlength=uniq.size)
        order = np.lexsort((first, -doc_scores))[:k]
        return {self._doc_ids[int(uniq[i])]: float(doc_scores[i]) for i in order}

    def _chunk_depth(self, k: int) -> int:
        """The first chunk depth tried for ``k`` documents: ``k`` when no document has more than one chunk (the
        first ``k`` hits are then ``k`` documents), else ``k * 2 * ceil(mean chunks per document)``."""
        if self._max_chunks_per_doc() <= 1:
            return min(len(self.chunks), k)
        per_doc = max(1, -(-len(self.chunks) // max(1, len(self._doc_ids))))
        return min(len(self.chunks), k * 2 * per_doc)

    def _max_chunks_per_doc(self) -> int:
        """The most chunks any one document has (computed once per chunk-to-document map)."""
        cached = getattr(self, "_per_doc_cache", None)
        if cached is None or cached[0] is not self._chunk_doc:
            n = 0 if self._chunk_doc is None or not self._chunk_doc.size else int(np.bincount(self._chunk_doc).max())
            self._per_doc_cache = (self._chunk_doc, n)
        return self._per_doc_cache[1]

    def _search_deep(self, search, n_queries: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, ``(scores, ids)`` of its best chunks, searched deep enough to hold ``k`` distinct documents.

        ``search(rows, depth)`` returns ``(scores, ids)`` for the query rows ``rows`` (ids ``-1`` past the hits).
        Starting at :meth:`_chunk_depth`, the queries whose hits hold fewer than ``k`` documents are searched
        again at twice the depth, until they hold ``k``, the depth reaches the number of chunks, or the index
        returns fewer hits than asked (it has nothing more to reach: BM25 past the chunks sharing a term with the
        query, IVF past the probed lists). Skewed corpora (a few documents with hundreds of chunks) then still
        give ``k`` documents. When no document has more than one chunk, one search at depth ``k`` is all.
        """
        n_chunks = len(self.chunks)
        depth = self._chunk_depth(k)
        single = self._max_chunks_per_doc() <= 1
        out: list = [None] * n_queries
        todo = np.arange(n_queries)
        while todo.size:
            scores, ids = search(todo, depth)
            again = []
            for row, qi in enumerate(todo):
                out[qi] = (scores[row], ids[row])
                if single or depth >= n_chunks or ids.shape[1] < depth or (ids[row] < 0).any():
                    continue
                if np.unique(self._chunk_doc[ids[row]]).size < k:
                    again.append(qi)
            if not again or single or depth >= n_chunks:
                break
            todo = np.asarray(again, dtype=np.int64)
            depth = min(n_chunks, depth * 2)
        return out

    def dense_run(self, qids: list[str]) -> dict[str, dict[str, float]]:
        from evolve.index import search_index

        k = self.config.retrieval.top_k
        qmat = np.stack([self._qvecs[q] for q in qids]).astype(np.float32)
        hits = self._search_deep(lambda rows, depth: search_index(self._index, qmat[rows], depth, self.config.index),
                                 len(qids), k)
        return {q: self._aggregate(*hits[i], k) for i, q in enumerate(qids)}

    def sparse_run(self, qids: list[str]) -> dict[str, dict[str, float]]:
        k = self.config.retrieval.top_k
        texts = [self.dataset.queries[q] for q in qids]
        hits = self._search_deep(lambda rows, depth: self._sparse.search([texts[i] for i in rows], depth), len(qids), k)
        return {q: self._aggregate(*hits[i], k) for i, q in enumerate(qids)}

    def first_stage(self, qids: list[str]) -> dict[str, dict[str, float]]:
        mode = self.config.retrieval.mode
        if mode == "dense":
            return self.dense_run(qids)
        if mode == "sparse":
            return self.sparse_run(qids)
        from evolve.fusion import fuse_runs

        return fuse_runs(self.dense_run(qids), self.sparse_run(qids), self.config.fusion, k=self.config.retrieval.top_k)

    def second_stage(self, qids: list[str], run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        if self.config.rerank.transport == "none":
            return run
        from evolve.rerankers import rerank_run

        queries = {q: self.dataset.queries[q] for q in qids}
        return rerank_run(self, queries, run)

    def _search_hits(self, texts: list[str], query_cache: EmbeddingCache | None = None
                     ) -> tuple[list[dict[str, float]], list[dict[str, tuple]]]:
        """Per query text: the final ranked list (doc id -> score) and each first-stage retriever's raw chunk
        hits (``{"dense": (scores, chunk ids), "sparse": ...}``), searched deep enough for ``retrieval.top_k``
        documents as :meth:`retrieve` does (:meth:`_search_deep`). Query vectors (the first stage's and a
        bi-encoder reranker's) go through ``query_cache``, by default :attr:`adhoc_cache`: in memory only, so what
        people typed never reaches a file, and the memory is bounded."""
        from evolve.index import search_index
        from evolve.passages import DENSE, SPARSE

        query_cache = query_cache if query_cache is not None else self.adhoc_cache
        self.prepare()
        cfg = self.config
        k = cfg.retrieval.top_k
        keys = [str(i) for i in range(len(texts))]
        if not texts:
            return [], []
        hits: list[dict[str, tuple]] = [{} for _ in texts]
        dense = sparse = None
        if self.uses_dense:
            qmat = self._embed([cfg.embedding.query_prefix + t for t in texts], "query", "embedding queries",
                               cache=query_cache)
            found = self._search_deep(lambda rows, depth: search_index(self._index, qmat[rows], depth, cfg.index),
                                      len(texts), k)
            dense = {q: self._aggregate(*found[i], k) for i, q in enumerate(keys)}
            for i, h in enumerate(found):
                hits[i][DENSE] = h
        if self.uses_sparse:
            texts = list(texts)
            found = self._search_deep(lambda rows, depth: self._sparse.search([texts[i] for i in rows], depth),
                                      len(texts), k)
            sparse = {q: self._aggregate(*found[i], k) for i, q in enumerate(keys)}
            for i, h in enumerate(found):
                hits[i][SPARSE] = h
        if dense is not None and sparse is not None:
            from evolve.fusion import fuse_runs

            run = fuse_runs(dense, sparse, cfg.fusion, k=k)
        else:
            run = dense if dense is not None else sparse
        if cfg.rerank.transport != "none":
            from evolve.rerankers import rerank_run

            run = rerank_run(self, dict(zip(keys, texts)), run, query_cache=query_cache)
        return [run[q] for q in keys], hits

    def search_texts(self, texts: list[str]) -> list[dict[str, float]]:
        """Ranked lists (doc id -> score) for ad-hoc query texts that are not in the dataset (the serving path):
        the same first and second stage as :meth:`retrieve`, query vectors in :attr:`adhoc_cache` (memory only),
        nothing kept in ``self``. Not thread-safe: one caller at a time (``evolve serve`` batches requests into one
        thread)."""
        return self._search_hits(texts)[0]

    def retrieve_passages(self, texts: list[str], k: int, *, query_cache: EmbeddingCache | None = None) -> list:
        """Per query text, its best ``k`` documents AND the chunks behind them, with each first-stage retriever's
        raw score (a list of :class:`evolve.passages.Retrieval`): the chunk-level step answers are built on,
        the same for serving and for evaluation (pass a dataset's query texts, and ``query_cache=pipeline.cache``
        to keep their vectors across trials; the default keeps them in memory only, as for a person's question).
        The ranking is :meth:`search_texts`'s. Not thread-safe, as :meth:`search_texts`."""
        from evolve.passages import DENSE, SPARSE, Retrieval, collect_passages

        runs, hits = self._search_hits(texts, query_cache)
        cfg = self.config
        chunked = cfg.chunking.strategy != "none"
        retrievers = tuple(r for r, on in ((DENSE, self.uses_dense), (SPARSE, self.uses_sparse)) if on)
        return [Retrieval(collect_passages(run, h, k, chunks=self.chunks, chunk_doc=self._chunk_doc,
                                           doc_ids=self._doc_ids, chunked=chunked,
                                           overlap=chunked and cfg.chunking.overlap > 0), retrievers, chunked)
                for run, h in zip(runs, hits)]

    def retrieve(self, qids: list[str]) -> dict[str, dict[str, float]]:
        """The final ranked lists (doc id -> score) of ``qids``."""
        self.prepare()
        self.embed_queries(qids)
        t0 = time.perf_counter()
        run = self.first_stage(qids)
        t1 = time.perf_counter()
        run = self.second_stage(qids, run)
        t2 = time.perf_counter()
        self.retrieve_seconds += t1 - t0
        self.rerank_seconds += t2 - t1
        return run

    def score(self, qids: list[str], qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
              metrics: list[str]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """Mean and per-query scores of ``run`` on ``qids``: ranx metrics against ``qrels``, and each
        ``context_recall@T`` (:mod:`evolve.answer.metrics`) on the queries of ``qids`` that have a reference answer
        (its per-query values cover only those; its mean is over them; left out when there are none)."""
        from evolve.answer.metrics._context import context_metric_budget, context_recall_scores

        context = [m for m in metrics if context_metric_budget(m) is not None]
        ranked = [m for m in metrics if m not in context]
        means, per_query = evaluate_run(qrels, run, ranked) if ranked else ({}, {})
        for m in context:
            values = context_recall_scores(self, qids, context_metric_budget(m))
            if values:  # no query with a reference answer: the metric is left out, not NaN
                per_query[m] = values
                means[m] = sum(values.values()) / len(values)
        return means, per_query

    def evaluate(self, qrels: dict[str, dict[str, int]], *, split: str | None = None,
                 metrics: list[str] | None = None) -> Evaluation:
        t0 = time.perf_counter()
        qids = sorted(q for q in qrels if q in self.dataset.queries)
        self.prepare()
        self.embed_queries(qids)
        run = self.retrieve(qids)
        means, per_query = self.score(qids, {q: qrels[q] for q in qids}, run, metrics or DEFAULT_METRICS)
        from evolve.provenance import provenance

        return Evaluation(
            config=self.config,
            dataset=self.dataset.name,
            split=split,
            metrics=means,
            per_query=per_query,
            run=run,
            dataset_fingerprint=self.dataset.fingerprint,
            corpus_fingerprint=self.dataset.corpus_fingerprint(),
            cache=self.stats,
            n_docs=len(self.dataset.corpus),
            n_chunks=len(self.chunks),
            retrieve_seconds=self.retrieve_seconds,
            rerank_seconds=self.rerank_seconds,
            total_seconds=time.perf_counter() - t0,
            provenance=provenance(),
        )

    def close(self) -> None:
        if self._adhoc_cache is not None:
            self._adhoc_cache.close()
        if self._own_pool:
            self.embedders.close()


def evaluate_config(config: PipelineConfig, dataset: Dataset, split: str, *, cache: EmbeddingCache | None = None,
                    embedders: EmbedderPool | None = None, progress: ProgressFactory = null_progress,
                    metrics: list[str] | None = None) -> Evaluation:
    """Evaluate ``config`` on ``dataset``'s ``split`` queries."""
    pipe = Pipeline(config, dataset, cache=cache, embedders=embedders, progress=progress)
    try:
        return pipe.evaluate(dataset.split_qrels(split), split=split, metrics=metrics)
    finally:
        pipe.close()
