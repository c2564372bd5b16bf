"""Second stage: rerank the head of each first-stage list, keep the tail."""

from __future__ import annotations

import threading

import numpy as np

from evolve.rerankers._base import Reranker
from evolve.rerankers._registry import get_reranker_class

__all__ = ["close_rerankers", "get_reranker", "rerank_lists", "rerank_run"]

#: fields that decide which reranker instance (model, engine, connection) is needed
_KEY_FIELDS = ("transport", "model", "dtype", "max_length", "base_url", "api_key_env", "timeout", "max_retries")
_POOL: dict[tuple, Reranker] = {}
_LOCK = threading.Lock()


def get_reranker(config, pipeline=None, *, query_cache=None) -> Reranker:
    """The reranker for ``config`` (a :class:`~evolve.config.RerankConfig`).

    Model-holding transports (cross-encoder, vllm, openai-rerank) are pooled per process by model fields, so
    trials share one model/engine/connection. ``bi-encoder`` is bound to the ``pipeline``'s embedding cache,
    embedder pool and stats, and is cheap to create (its model lives in the embedder pool); ``query_cache``,
    when given, takes its query vectors instead (a server's: memory only).
    """
    cls = get_reranker_class(config.transport)
    if config.transport == "bi-encoder":
        if pipeline is None:
            return cls(config, query_cache=query_cache)
        return cls(config, cache=pipeline.cache, embedders=pipeline.embedders, stats=pipeline.stats,
                   query_cache=query_cache)
    key = tuple((f, repr(getattr(config, f))) for f in _KEY_FIELDS)
    with _LOCK:
        r = _POOL.get(key)
        if r is None:
            r = _POOL[key] = cls(config)
    r.config = config  # batch size and other per-call settings follow the current trial
    return r


def close_rerankers() -> int:
    """Close every pooled reranker (vLLM engines stay in their own pool). Returns how many were closed."""
    with _LOCK:
        items = list(_POOL.values())
        _POOL.clear()
    for r in items:
        r.close()
    return len(items)


def _minmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi - lo <= 1e-12 else (x - lo) / (hi - lo)


def _merge(ranked: list[tuple[str, float]], rerank: np.ndarray, depth: int, combine: str, weight: float) -> dict[str, float]:
    """Head (first ``depth``) reordered, tail kept; scores strictly above every tail score for the head."""
    head, tail = ranked[:depth], ranked[depth:]
    if not head:
        return dict(tail)
    first = np.array([s for _, s in head], dtype=np.float64)
    if combine == "replace":
        new = np.asarray(rerank, dtype=np.float64)
    else:
        new = weight * _minmax(rerank) + (1.0 - weight) * _minmax(first)
    # ties keep the first-stage order
    order = sorted(range(len(head)), key=lambda i: (-new[i], i))
    out: dict[str, float] = {}
    if tail:
        top_tail = max(s for _, s in tail)
        shift = top_tail + 1.0 - float(new.min())
    else:
        shift = 0.0
    for i in order:
        out[head[i][0]] = float(new[i] + shift)
    for d, s in tail:
        out[d] = float(s)
    return out


def rerank_lists(reranker: Reranker, config, queries: dict[str, str], run: dict[str, dict[str, float]],
                 doc_text, progress=None) -> dict[str, dict[str, float]]:
    """Depth semantics on plain data: ``doc_text(doc id) -> str``; see :func:`rerank_run`."""
    depth = int(config.depth)
    qids = [q for q in run if q in queries]
    ranked = {q: sorted(run[q].items(), key=lambda kv: (-kv[1], kv[0])) for q in qids}
    todo = [q for q in qids if ranked[q]]
    q_texts = [config.query_prefix + queries[q] for q in todo]
    d_texts = [[config.doc_prefix + doc_text(d) for d, _ in ranked[q][:depth]] for q in todo]
    scores = reranker.score_batch(q_texts, d_texts, progress=progress) if todo else []
    out = {q: dict(run[q]) for q in run if q not in queries}
    for q in qids:
        out[q] = {}
    for q, s in zip(todo, scores):
        out[q] = _merge(ranked[q], s, depth, config.combine, float(config.weight))
    return out


def rerank_run(pipeline, queries: dict[str, str], run: dict[str, dict[str, float]], *,
               query_cache=None) -> dict[str, dict[str, float]]:
    """Rerank the head of each query's first-stage list.

    Depth semantics: ``retrieval.top_k`` is how deep each first-stage retriever goes; the best ``rerank.depth``
    (≤ top_k) documents of the (fused) list are rescored and reordered, and the rest of the list follows
    unchanged, so the final list is exactly as long as the first-stage one and ``@100`` metrics stay meaningful.
    Head scores are shifted above the best tail score, so sorting by score gives head then tail.

    ``rerank.combine``: ``replace`` orders the head by the rerank score alone; ``fuse`` by
    ``weight * minmax(rerank) + (1 - weight) * minmax(first stage)`` over the head, so a weaker reranker with a
    small weight only breaks near-ties of a strong first stage instead of dragging it down.

    Rerankers see ``rerank.query_prefix + query`` and ``rerank.doc_prefix + document.full_text``. A reranker
    that caches query vectors (bi-encoder) keeps them in ``query_cache`` when given (ad-hoc texts: memory only).
    """
    cfg = pipeline.config.rerank
    reranker = get_reranker(cfg, pipeline, query_cache=query_cache)
    corpus = pipeline.dataset.corpus
    n_pairs = sum(min(cfg.depth, len(docs)) for q, docs in run.items() if q in queries)
    with pipeline.progress("reranking", n_pairs) as advance:
        return rerank_lists(reranker, cfg, queries, run, lambda d: corpus[d].full_text, progress=advance)
