"""One retrieval pipeline, end to end: chunk -> embed (cached) -> index -> retrieve -> fuse/rerank -> score."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evolve.cache import CacheStats, EmbeddingCache
from evolve.chunking import Chunk, chunk_corpus
from evolve.config import PipelineConfig, config_to_yaml
from evolve.datasets import Dataset
from evolve.embedders import Embedder, EmbedderPool
from evolve.evaluate import DEFAULT_METRICS, evaluate_run, write_trec_run
from evolve.progress import ProgressFactory, null_progress

__all__ = ["Pipeline", "Evaluation", "evaluate_config"]

log = logging.getLogger("evolve.pipeline")

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
        return len(next(iter(self.per_query.values()))) if self.per_query else 0

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
        }

    def per_query_table(self) -> str:
        metrics = list(self.per_query)
        qids = sorted(next(iter(self.per_query.values()))) if metrics else []
        lines = ["query_id\t" + "\t".join(metrics)]
        lines += [q + "\t" + "\t".join(f"{self.per_query[m][q]:.6f}" for m in metrics) for q in qids]
        return "\n".join(lines) + "\n"

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
        self._prepared = False

    # ------------------------------------------------------------------ building
    @property
    def uses_dense(self) -> bool:
        return self.config.retrieval.mode in ("dense", "hybrid")

    @property
    def uses_sparse(self) -> bool:
        return self.config.retrieval.mode in ("sparse", "hybrid")

    def _embedder(self) -> Embedder:
        return self.embedders.get(self.config.embedding)

    def _embed(self, texts: list[str], kind: str, label: str) -> np.ndarray:
        with self.progress(label, len(texts)) as advance:
            vecs, stats = self.cache.embed(self._embedder(), texts, kind, progress=advance)
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
        self.chunks = chunk_corpus(self.dataset.corpus, cfg.chunking, cfg.embedding.model)
        self._doc_ids = list(self.dataset.corpus)
        pos = {d: i for i, d in enumerate(self._doc_ids)}
        self._chunk_doc = np.fromiter((pos[c.doc_id] for c in self.chunks), dtype=np.int64, count=len(self.chunks))
        if self.uses_dense:
            from evolve.index import build_index

            texts = [cfg.embedding.doc_prefix + c.text for c in self.chunks]
            vecs = self._embed(texts, "document", "embedding chunks")
            self._index = build_index(vecs, cfg.index, seed=self.seed)
        if self.uses_sparse:
            self._sparse = self._build_sparse()
        self._prepared = True
        return self

    def _build_sparse(self):
        from evolve.sparse import build_bm25

        return build_bm25([c.text for c in self.chunks], self.config.sparse, cache=self.cache)

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
        agg = self.config.retrieval.aggregation
        acc: dict[int, list[float]] = {}
        for s, cid in zip(scores, ids):
            if cid < 0:
                continue
            acc.setdefault(int(self._chunk_doc[cid]), []).append(float(s))
        if agg == "max":
            doc_scores = {d: max(v) for d, v in acc.items()}
        elif agg == "sum":
            doc_scores = {d: float(sum(v)) for d, v in acc.items()}
        else:
            doc_scores = {d: float(sum(v) / len(v)) for d, v in acc.items()}
        top = sorted(doc_scores.items(), key=lambda kv: -kv[1])[:k]
        return {self._doc_ids[d]: s for d, s in top}

    def _chunk_depth(self, k: int) -> int:
        per_doc = max(1, -(-len(self.chunks) // max(1, len(self._doc_ids))))
        return min(len(self.chunks), k * (1 if per_doc == 1 else 2 * per_doc))

    def dense_run(self, qids: list[str]) -> dict[str, dict[str, float]]:
        from evolve.index import search_index

        k = self.config.retrieval.top_k
        qmat = np.stack([self._qvecs[q] for q in qids]).astype(np.float32)
        scores, ids = search_index(self._index, qmat, self._chunk_depth(k), self.config.index)
        return {q: self._aggregate(scores[i], ids[i], k) for i, q in enumerate(qids)}

    def sparse_run(self, qids: list[str]) -> dict[str, dict[str, float]]:
        k = self.config.retrieval.top_k
        texts = [self.dataset.queries[q] for q in qids]
        scores, ids = self._sparse.search(texts, self._chunk_depth(k))
        return {q: self._aggregate(scores[i], ids[i], k) for i, q in enumerate(qids)}

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

    def search_texts(self, texts: list[str]) -> list[dict[str, float]]:
        """Ranked lists (doc id -> score) for ad-hoc query texts that are not in the dataset (the serving path):
        the same first and second stage as :meth:`retrieve`, query vectors through the cache, nothing kept in
        ``self``. Not thread-safe: one caller at a time (``evolve serve`` batches requests into one thread)."""
        from evolve.index import search_index

        self.prepare()
        cfg = self.config
        k = cfg.retrieval.top_k
        keys = [str(i) for i in range(len(texts))]
        if not texts:
            return []
        dense = sparse = None
        if self.uses_dense:
            qmat = self._embed([cfg.embedding.query_prefix + t for t in texts], "query", "embedding queries")
            scores, ids = search_index(self._index, qmat, self._chunk_depth(k), cfg.index)
            dense = {q: self._aggregate(scores[i], ids[i], k) for i, q in enumerate(keys)}
        if self.uses_sparse:
            scores, ids = self._sparse.search(list(texts), self._chunk_depth(k))
            sparse = {q: self._aggregate(scores[i], ids[i], k) for i, q in enumerate(keys)}
        if dense is not None and sparse is not None:
            from evolve.fusion import fuse_runs

            run = fuse_runs(dense, sparse, cfg.fusion, k=k)
        else:
            run = dense if dense is not None else sparse
        if cfg.rerank.transport != "none":
            from evolve.rerankers import rerank_run

            run = rerank_run(self, dict(zip(keys, texts)), run)
        return [run[q] for q in keys]

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

    def evaluate(self, qrels: dict[str, dict[str, int]], *, split: str | None = None,
                 metrics: list[str] | None = None) -> Evaluation:
        t0 = time.perf_counter()
        qids = sorted(q for q in qrels if q in self.dataset.queries)
        self.prepare()
        self.embed_queries(qids)
        run = self.retrieve(qids)
        means, per_query = evaluate_run({q: qrels[q] for q in qids}, run, metrics or DEFAULT_METRICS)
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
