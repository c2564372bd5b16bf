"""A (stronger) bi-encoder rescoring the candidates: cosine of query and document vectors.

Vectors go through the pipeline's embedding cache (:meth:`EmbeddingCache.embed`, kinds ``query`` and
``document``) and models through its embedder pool, with an :class:`~evolve.config.EmbeddingConfig` built from
the rerank fields (:func:`embedding_config`): backend sentence-transformers, ``rerank.model``, ``rerank.dtype``,
``rerank.batch_size`` and ``rerank.max_length`` capped at the model's own ``max_seq_length`` (so 512 and 384 share
one cache identity for all-mpnet-base-v2). A document is embedded once per cache, whatever the query. A server's
query vectors go to the memory-only ``query_cache`` it is given instead (:meth:`Pipeline.search_texts`).
"""

from __future__ import annotations

import numpy as np

from evolve.rerankers._base import Reranker
from evolve.rerankers._common import max_tokens, model_folder

__all__ = ["BiEncoderReranker", "embedding_config"]


def embedding_config(config):
    from evolve.config import EmbeddingConfig

    path = model_folder(config)
    return EmbeddingConfig(backend="sentence-transformers", model=config.model, normalize=True,
                           max_length=max_tokens(config, path), batch_size=config.batch_size, dtype=config.dtype)


class BiEncoderReranker(Reranker):
    name = "bi-encoder"

    def __init__(self, config, *, query_cache=None, **kw):
        super().__init__(config, **kw)
        self.emb_config = embedding_config(config)
        #: where query vectors go when not ``self.cache`` (a server's ad-hoc queries: memory only)
        self.query_cache = query_cache

    def _embedder(self):
        if self.embedders is None:
            from evolve.embedders import EmbedderPool

            self.embedders = EmbedderPool()
        return self.embedders.get(self.emb_config)

    def _vectors(self, texts: list[str], kind: str, progress=None) -> np.ndarray:
        from evolve.cache import EmbeddingCache

        if self.cache is None:
            self.cache = EmbeddingCache(None)
        cache = self.query_cache if kind == "query" and self.query_cache is not None else self.cache
        vecs, stats = cache.embed(self._embedder(), texts, kind, progress=progress)
        if self.stats is not None:
            self.stats.add(stats)
        return vecs

    def score_batch(self, queries, docs, *, progress=None):
        flat = [d for ds in docs for d in ds]
        if not flat:
            return [np.zeros(0, dtype=np.float32) for _ in docs]
        uniq = list(dict.fromkeys(flat))
        pos = {t: i for i, t in enumerate(uniq)}
        dvec = self._vectors(uniq, "document")
        qvec = self._vectors(list(queries), "query")
        out = []
        for i, ds in enumerate(docs):
            idx = np.fromiter((pos[d] for d in ds), dtype=np.int64, count=len(ds))
            out.append((dvec[idx] @ qvec[i]).astype(np.float32))
            if progress is not None:
                progress(len(ds))
        return out
