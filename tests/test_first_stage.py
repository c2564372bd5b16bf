"""Issue 14.7: first-stage lists hold ``top_k`` documents on a skewed corpus; chunk aggregation known answers.

The corpus is synthetic: 980 documents of one chunk and 20 documents of 200 chunks ("tokens" chunking, 16
MiniLM tokens a chunk). The pipeline is the real one (chunking with MiniLM's tokenizer, a SQLite embedding cache,
faiss, bm25s); only the vectors are made up: seeded random unit vectors written into the cache under MiniLM's
own identity through the cache's API, so a fully cached prepare runs no model. The chunks of the 20 large
documents lie close to the query vector and repeat the query term, so they fill the head of both chunk lists.
"""

from __future__ import annotations

import numpy as np
import pytest

from evolve.config import parse_config
from evolve.datasets import Dataset, Document

WORDS = ("cell gene protein blood heart brain liver lung bone skin muscle tissue tumor virus drug dose trial risk "
         "rate level growth signal receptor membrane enzyme acid sugar water salt iron zinc copper light heat sound "
         "wave field force mass energy power motor engine river ocean forest desert mountain valley island garden "
         "market school office doctor nurse patient mother father child family village city county").split()
TERM = "kinase"  # one MiniLM token, in every chunk of the large documents and in 300 of the small ones
N_SMALL, N_BIG, BIG_CHUNKS, DIM = 980, 20, 200, 16


def _config(aggregation="max", mode="dense", strategy="tokens"):
    return parse_config({"chunking": {"strategy": strategy, "size": 16, "overlap": 0},
                         "retrieval": {"mode": mode, "top_k": 100, "aggregation": aggregation},
                         "index": {"type": "flat", "use_gpu": False}})


def _unit(v):
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    """(dataset, cache, {chunk text: vector}, query vector). Vectors for every chunk text of 'tokens' and of
    'none' chunking (the small documents alone are then one chunk each) are in the cache."""
    from evolve.cache import EmbeddingCache, cache_key
    from evolve.chunking import chunk_corpus
    from evolve.embedders import EmbedderPool

    rng = np.random.default_rng(7)
    corpus = {}
    for j in range(N_BIG):  # 200 windows of 16 tokens: the term 3 times, then 13 seeded words
        words = []
        for _ in range(BIG_CHUNKS):
            words += [TERM] * 3 + list(rng.choice(WORDS, 13))
        corpus[f"big{j:02d}"] = Document(f"big{j:02d}", "", " ".join(words))
    for i in range(N_SMALL):  # 8 tokens: one chunk
        words = list(rng.choice(WORDS, 8))
        if i < 300:
            words[3] = TERM
        corpus[f"s{i:03d}"] = Document(f"s{i:03d}", "", " ".join(words))
    ds = Dataset("skewed", "synthetic", corpus, {"q": TERM}, {"test": {"q": {"big00": 1, "s000": 1}}})

    vectors: dict[str, np.ndarray] = {}
    cfg = _config()
    for chunk in chunk_corpus(ds.corpus, cfg.chunking, cfg.embedding.model):
        if chunk.text in vectors:
            continue
        if chunk.doc_id.startswith("big"):  # cosine with the query about 0.93
            v = np.eye(DIM)[0] + 0.1 * rng.standard_normal(DIM)
        else:  # anywhere
            v = rng.standard_normal(DIM)
        vectors[chunk.text] = _unit(v)
    query = np.eye(DIM, dtype=np.float32)[0]
    cache = EmbeddingCache(tmp_path_factory.mktemp("skewed") / "embeddings.sqlite")
    pool = EmbedderPool()
    identity = pool.get(cfg.embedding).identity()
    texts = list(vectors)
    cache.store_vectors([cache_key(identity, "document", t) for t in texts], np.stack([vectors[t] for t in texts]),
                        cfg.embedding.model)
    cache.store_vectors([cache_key(identity, "query", TERM)], query[None, :], cfg.embedding.model)
    yield ds, cache, vectors, query
    pool.close()
    cache.close()


def _pipeline(skewed, cfg, dataset=None):
    from evolve.pipeline import Pipeline

    ds, cache, _, _ = skewed
    pipe = Pipeline(cfg, dataset or ds, cache=cache).prepare()
    assert pipe.stats.n_embedded == 0  # every vector came from the cache: no model ran
    pipe.embed_queries(["q"])
    return pipe


def _spy_depths(monkeypatch, pipe, mode):
    """The chunk depth of every search the pipeline makes (a counter around the real search)."""
    depths: list[int] = []
    if mode == "dense":
        import evolve.index

        real = evolve.index.search_index

        def counted(index, queries, k, config):
            depths.append(k)
            return real(index, queries, k, config)

        monkeypatch.setattr(evolve.index, "search_index", counted)
    else:
        real = pipe._sparse.search

        def counted(texts, k):
            depths.append(k)
            return real(texts, k)

        monkeypatch.setattr(pipe._sparse, "search", counted)
    return depths


def _doc_max(chunk_docs, chunk_scores, k):
    best: dict[str, float] = {}
    for d, s in zip(chunk_docs, chunk_scores):
        best[d] = max(best.get(d, -np.inf), float(s))
    return [d for d, _ in sorted(best.items(), key=lambda kv: -kv[1])[:k]]


@pytest.fixture(scope="module")
def dense_pipe(skewed):
    return _pipeline(skewed, _config())


def test_skewed_corpus_fills_top_k_dense(skewed, dense_pipe, monkeypatch):
    """Old code: depth 100 * 2 * ceil(4980 / 1000) = 1000 chunks, all of them from the 20 large documents, so
    the list held 20 documents instead of 100 (recall@100 capped, fusion starved)."""
    pipe = dense_pipe
    assert len(pipe.chunks) == N_SMALL + N_BIG * BIG_CHUNKS == 4980
    assert int(np.bincount(pipe._chunk_doc).max()) == BIG_CHUNKS
    depths = _spy_depths(monkeypatch, pipe, "dense")
    run = pipe.dense_run(["q"])["q"]
    assert len(run) == 100
    assert depths == [1000, 2000, 4000, 4980]  # doubled until 100 documents appeared (here: the whole corpus)
    # known answer: exact max-cosine of every chunk, brute force in numpy
    _, _, vectors, query = skewed
    cos = np.stack([vectors[c.text] for c in pipe.chunks]) @ query
    assert list(run) == _doc_max([c.doc_id for c in pipe.chunks], cos, 100)
    assert all(d.startswith("big") for d in list(run)[:N_BIG])  # the large documents, then the best 80 small


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
def test_skewed_corpus_sum_and_mean_see_every_chunk_searched(skewed, dense_pipe, monkeypatch, aggregation):
    """The whole corpus was searched, so sum / mean run over all 200 chunks of a large document (old code:
    over the ~50 of each that fit in 1,000 chunks, and 20 documents only)."""
    # aggregation is read at retrieval time: the prepared chunks and index serve every aggregation
    monkeypatch.setattr(dense_pipe, "config", _config(aggregation))
    run = dense_pipe.dense_run(["q"])["q"]
    _, _, vectors, query = skewed
    for doc in ("big00", "big07", "big19"):
        cos = [float(vectors[c.text] @ query) for c in dense_pipe.chunks if c.doc_id == doc]
        assert len(cos) == BIG_CHUNKS
        assert run[doc] == pytest.approx(sum(cos) if aggregation == "sum" else sum(cos) / len(cos), rel=1e-5)
    assert len(run) == 100


def test_skewed_corpus_fills_top_k_sparse(skewed, monkeypatch):
    """BM25 stops when it runs out of chunks sharing a term with the query (4,300 of 4,980 here)."""
    from evolve.sparse import build_bm25

    cfg = _config(mode="sparse")
    pipe = _pipeline(skewed, cfg)
    depths = _spy_depths(monkeypatch, pipe, "sparse")
    run = pipe.sparse_run(["q"])["q"]
    assert len(run) == 100
    assert depths == [1000, 2000, 4000, 4980]
    # known answer: every BM25 hit of the corpus at once (real bm25s, searched as deep as the corpus)
    index = build_bm25([c.text for c in pipe.chunks], cfg.sparse)
    scores, ids = index.search([TERM], len(pipe.chunks))
    hit = ids[0] >= 0
    assert hit.sum() == N_BIG * BIG_CHUNKS + 300
    assert list(run) == _doc_max([pipe.chunks[i].doc_id for i in ids[0][hit]], scores[0][hit], 100)


def test_one_chunk_per_document_searches_once(skewed, monkeypatch):
    """When no document has more than one chunk, one search at depth top_k, as before: no extra searches."""
    ds = skewed[0]
    small = Dataset("small", "synthetic", {d: doc for d, doc in ds.corpus.items() if d.startswith("s")},
                    ds.queries, {"test": {"q": {"s000": 1}}})
    for mode in ("dense", "sparse"):
        pipe = _pipeline(skewed, _config(mode=mode), small)
        assert len(pipe.chunks) == N_SMALL
        depths = _spy_depths(monkeypatch, pipe, mode)
        run = (pipe.dense_run if mode == "dense" else pipe.sparse_run)(["q"])["q"]
        assert depths == [100] and len(run) == 100
        monkeypatch.undo()


@pytest.mark.parametrize(("aggregation", "expected"), [
    ("max", {"A": 0.9, "B": 0.8, "C": 0.7}),
    ("sum", {"A": 1.5, "C": 1.3, "B": 0.8}),
    ("mean", {"B": 0.8, "C": 0.65, "A": 0.5}),
])
def test_chunk_aggregation_known_answers(tmp_path, aggregation, expected):
    """Document A has chunks at cosine 0.9, 0.5, 0.1; B one at 0.8; C two at 0.7 and 0.6 (hand-made vectors in
    the cache); the list is ordered by the aggregated score."""
    from evolve.cache import EmbeddingCache, cache_key
    from evolve.chunking import chunk_corpus
    from evolve.embedders import EmbedderPool
    from evolve.pipeline import Pipeline

    cos = {"A": [0.9, 0.5, 0.1], "B": [0.8], "C": [0.7, 0.6]}
    corpus = {d: Document(d, "", " ".join(" ".join([w] * 16) for w in WORDS[i * 3:i * 3 + len(c)]))
              for i, (d, c) in enumerate(cos.items())}
    ds = Dataset("tiny", "synthetic", corpus, {"q": TERM}, {"test": {"q": {"A": 1}}})
    cfg = _config(aggregation)
    chunks = chunk_corpus(ds.corpus, cfg.chunking, cfg.embedding.model)
    assert [c.doc_id for c in chunks] == ["A", "A", "A", "B", "C", "C"]
    wanted = [x for d in cos for x in cos[d]]
    vecs = np.array([[c, (1 - c * c) ** 0.5] for c in wanted], dtype=np.float32)
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    pool = EmbedderPool()
    try:
        ident = pool.get(cfg.embedding).identity()
        cache.store_vectors([cache_key(ident, "document", c.text) for c in chunks], vecs, cfg.embedding.model)
        cache.store_vectors([cache_key(ident, "query", TERM)], np.array([[1.0, 0.0]], np.float32), cfg.embedding.model)
        pipe = Pipeline(cfg, ds, cache=cache, embedders=pool).prepare()
        assert pipe.stats.n_embedded == 0
        pipe.embed_queries(["q"])
        run = pipe.dense_run(["q"])["q"]
    finally:
        pool.close()
        cache.close()
    assert run == pytest.approx(expected, rel=1e-6)
    assert list(run) == list(expected)
