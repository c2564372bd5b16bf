"""Issue 14, scale: faiss indexes named by cache keys, persisted and bounded by bytes; chunks and the corpus
fingerprint computed once per process, not once per trial; a warm trial reads no document vector."""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest

import evolve.index as index_mod
from evolve.cache import DerivedStore, EmbeddingCache, SQLiteStore
from evolve.config import IndexConfig, PipelineConfig, apply_overrides
from evolve.index import STATS, build_index, clear_index_cache, get_index, index_bytes, vectors_fingerprint


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class Loader:
    """Counts how often the index asks for its vectors (it must only when it builds)."""

    def __init__(self, vecs):
        self.vecs, self.calls = vecs, 0

    def __call__(self):
        self.calls += 1
        return self.vecs


def test_vectors_fingerprint_hashes_in_place():
    """The old fingerprint hashed ``vectors.tobytes()``: a full copy (1.5 GB at a million 384-d chunks)."""
    vecs = _unit(40_000, 384)  # 61 MB
    tracemalloc.start()
    fp = vectors_fingerprint(vecs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000, peak
    assert fp == vectors_fingerprint(vecs.copy()) and fp != vectors_fingerprint(vecs[:-1])


def test_hnsw_is_persisted_and_loaded_without_the_vectors(tmp_path):
    vecs = _unit(3000, 32)
    store = DerivedStore(tmp_path, "faiss")
    cfg = IndexConfig(type="hnsw", hnsw_m=8, hnsw_ef_construction=40)
    clear_index_cache()
    before = dict(STATS)
    first = Loader(vecs)
    a = get_index("fp-1", cfg, n=3000, vectors=first, store=store, model="m")
    assert first.calls == 1 and STATS["built"] == before["built"] + 1
    assert len(store.artefacts()) == 1 and store.artefacts()[0].meta["model"] == "m"
    again = Loader(vecs)
    assert get_index("fp-1", cfg, n=3000, vectors=again, store=store) is a and again.calls == 0  # memory
    clear_index_cache()  # a new process: read from disk, not rebuilt
    b = get_index("fp-1", cfg, n=3000, vectors=again, store=store)
    assert again.calls == 0 and STATS["disk"] == before["disk"] + 1 and b.ntotal == 3000
    q = vecs[:20]
    assert (a.search(q, 5)[1] == b.search(q, 5)[1]).all()
    # search-side parameters do not name another index; build-side ones do
    assert index_mod.index_name("fp-1", cfg, 3000, 0) == index_mod.index_name(
        "fp-1", IndexConfig(type="hnsw", hnsw_m=8, hnsw_ef_construction=40, hnsw_ef_search=512), 3000, 7)
    assert index_mod.index_name("fp-1", cfg, 3000, 0) != index_mod.index_name(
        "fp-1", IndexConfig(type="hnsw", hnsw_m=16, hnsw_ef_construction=40), 3000, 0)
    # a flat index is not persisted: it is the vectors themselves
    get_index("fp-1", IndexConfig(type="flat"), n=3000, vectors=Loader(vecs), store=store)
    assert len(store.artefacts()) == 1


def test_a_damaged_persisted_index_is_rebuilt(tmp_path, caplog):
    vecs = _unit(1000, 16)
    store = DerivedStore(tmp_path, "faiss")
    cfg = IndexConfig(type="ivf", ivf_nlist=8)
    clear_index_cache()
    get_index("fp-2", cfg, n=1000, vectors=Loader(vecs), store=store)
    art = store.artefacts()[0]
    raw = bytearray(art.data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte among the vectors: faiss would load it silently
    art.data.write_bytes(bytes(raw))
    clear_index_cache()
    loader = Loader(vecs)
    with caplog.at_level(logging.WARNING, logger="evolve.cache"):
        idx = get_index("fp-2", cfg, n=1000, vectors=loader, store=store)
    assert loader.calls == 1 and idx.ntotal == 1000
    assert any("damaged" in r.getMessage() for r in caplog.records)
    assert store.open(art.name) is not None  # rewritten, verified again


def test_memory_is_bounded_by_bytes(monkeypatch):
    """The old LRU kept 8 indexes whatever their size (about 12 GB flat at a million chunks)."""
    clear_index_cache()
    vecs = _unit(2000, 64)
    one = index_bytes(build_index(vecs, IndexConfig(), fingerprint="size-probe"))
    assert one == 2000 * 64 * 4
    clear_index_cache()
    monkeypatch.setattr(index_mod, "MEMORY_BYTES", int(2.5 * one))
    loaders = [Loader(vecs) for _ in range(4)]
    for i, ld in enumerate(loaders):
        get_index(f"fp-{i}", IndexConfig(), n=2000, vectors=ld)
    assert len(index_mod._INDEXES) == 2 and index_mod._INDEXES.total_bytes() <= 2.5 * one
    again = Loader(vecs)
    get_index("fp-3", IndexConfig(), n=2000, vectors=again)  # the newest stayed
    get_index("fp-0", IndexConfig(), n=2000, vectors=again)  # the oldest went
    assert again.calls == 1
    clear_index_cache()


# ------------------------------------------------------------------------------------- a trial's work, once a night
class CountingStore(SQLiteStore):
    """The real SQLite store, counting the vectors it reads (a spy, not a stand-in: every call goes through)."""

    read = 0

    def get(self, keys):
        CountingStore.read += len(keys)
        return super().get(keys)


def test_warm_trials_chunk_once_and_read_no_document_vector(tmp_path_factory, tmp_path, scifact_small, monkeypatch):
    """Issue 14: every trial re-chunked the corpus, re-serialised it for its fingerprint and read every chunk
    vector back. Now a second trial on the same corpus (other top-k or aggregation) chunks nothing,
    fingerprints nothing and reads no document vector: the index is found by the vectors' cache keys, after the
    cache confirms it still holds them (they count as hits). Queries are still read from the cache."""
    import shutil

    from conftest import seeded_cache

    import evolve.datasets._types as types_mod
    import evolve.pipeline as pipeline_mod
    from evolve.cache import cache_key
    from evolve.datasets import Dataset
    from evolve.embedders import EmbedderPool
    from evolve.pipeline import Pipeline, clear_chunk_memo

    db = tmp_path / "cache" / "embeddings.sqlite"
    db.parent.mkdir()
    shutil.copy(seeded_cache(tmp_path_factory, scifact_small), db)
    ds = Dataset(scifact_small.name, scifact_small.source, scifact_small.corpus, scifact_small.queries,
                 scifact_small.qrels)  # a new Dataset object: nothing memoised on it yet
    calls = {"chunk": 0, "sha": 0}
    real_chunk, real_sha = pipeline_mod.chunk_corpus, types_mod._sha

    def chunk(*a, **kw):
        calls["chunk"] += 1
        return real_chunk(*a, **kw)

    def sha(obj):
        calls["sha"] += isinstance(obj, list)  # the corpus's fingerprint (the gold's is a dict)
        return real_sha(obj)

    monkeypatch.setattr(pipeline_mod, "chunk_corpus", chunk)
    monkeypatch.setattr(types_mod, "_sha", sha)
    clear_chunk_memo()
    clear_index_cache()
    pool = EmbedderPool()
    cache = EmbeddingCache(CountingStore(db))
    qrels = ds.qrels["test"]
    n_q, n_d = len(qrels), len(ds.corpus)
    try:
        CountingStore.read = 0
        first = Pipeline(PipelineConfig(), ds, cache=cache, embedders=pool).evaluate(qrels)
        assert first.cache.n_embedded == 0 and CountingStore.read == n_d + n_q
        assert calls == {"chunk": 1, "sha": 1}
        CountingStore.read = 0
        for overrides in (["retrieval.top_k=200"], ["retrieval.aggregation=sum"]):
            ev = Pipeline(apply_overrides(PipelineConfig(), overrides), ds, cache=cache, embedders=pool).evaluate(qrels)
            assert ev.cache.n_embedded == 0 and ev.cache.n_hits == ev.cache.n_texts == n_d + n_q
            assert ev.metrics == first.metrics
        assert CountingStore.read == 2 * n_q  # query vectors only
        assert calls == {"chunk": 1, "sha": 1}
        # three document vectors gone from the cache since: the index is not trusted, what is missing is
        # embedded again and the index rebuilt (a new cache object asks the store afresh)
        identity = pool.get(PipelineConfig().embedding).identity()
        gone = [cache_key(identity, "document", d.full_text) for d in list(ds.corpus.values())[:3]]
        cache.store.delete(gone)
        cache2 = EmbeddingCache(db)
        again = Pipeline(PipelineConfig(), ds, cache=cache2, embedders=pool).evaluate(qrels)
        cache2.close()
        assert again.cache.n_embedded == 3
        assert again.metrics == pytest.approx(first.metrics, abs=1e-6)
    finally:
        cache.close()
        pool.close()


def test_corpus_fingerprint_once_per_corpus(scifact_small, monkeypatch):
    import evolve.datasets._types as types_mod
    from evolve.datasets import Dataset, Document

    ds = Dataset("d", "s", dict(list(scifact_small.corpus.items())[:50]), {}, {})
    n = {"sha": 0}
    real = types_mod._sha

    def sha(obj):
        n["sha"] += 1
        return real(obj)

    monkeypatch.setattr(types_mod, "_sha", sha)
    fp = ds.corpus_fingerprint()
    assert [ds.corpus_fingerprint() for _ in range(5)] == [fp] * 5 and n["sha"] == 1
    ds.corpus = {**ds.corpus, "new": Document("new", "", "an added document")}  # a new corpus: fingerprinted again
    assert ds.corpus_fingerprint() != fp and n["sha"] == 2


class StandInEmbedder:
    """STAND-IN embedder (random unit vectors per text, fixed identity): these tests measure reuse, not vectors."""

    name = "index-test-standin"

    def __init__(self, config):
        self.config = config

    def identity(self) -> str:
        return "index-test-standin-v1"

    def embed(self, texts, *, kind="document", progress=None):
        import zlib

        return np.stack([_unit(1, 16, zlib.crc32(t.encode()))[0] for t in texts])

    def close(self):
        pass


def test_duplicate_chunks_do_not_defeat_the_warm_path(tmp_path):
    """Chunks with the same text share one cache key; the check that the cache still holds an index's vectors
    counts distinct keys, so a corpus with repeated texts is still served without reading its vectors."""
    from evolve.config import parse_config
    from evolve.datasets import Dataset, Document
    from evolve.embedders import register_embedder
    from evolve.pipeline import evaluate_config

    register_embedder("index-test-standin", "test_index:StandInEmbedder")
    corpus = {f"d{i}": Document(f"d{i}", "", f"text number {i % 20}") for i in range(30)}  # 10 repeats
    ds = Dataset("dups", "test", corpus, {"q": "text number 3"}, {"test": {"q": {"d3": 1}}})
    cfg = parse_config({"embedding": {"backend": "index-test-standin", "model": "stand-in"}})
    clear_index_cache()
    cache = EmbeddingCache(CountingStore(tmp_path / "cache" / "embeddings.sqlite"))
    try:
        first = evaluate_config(cfg, ds, "test", cache=cache)
        assert first.cache.n_embedded == 20 + 1
        CountingStore.read = 0
        again = evaluate_config(apply_overrides(cfg, ["retrieval.top_k=200"]), ds, "test", cache=cache)
        assert again.cache.n_embedded == 0 and again.cache.n_hits == 31 and CountingStore.read == 1
    finally:
        cache.close()
