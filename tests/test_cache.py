"""Issue 3: the content-addressed embedding cache: keys, Matryoshka reuse, concurrency, crash and damage safety,
incremental re-embedding, cheap-axis replays, and a fully cached evaluation that never loads the model."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import seeded_cache

from evolve.cache import EmbeddingCache, SQLiteStore, cache_key
from evolve.cache._cache import CacheStats
from evolve.config import EmbeddingConfig, PipelineConfig, apply_overrides
from evolve.datasets import Dataset, Document
from evolve.embedders import EmbedderPool, create_embedder
from evolve.pipeline import Pipeline, evaluate_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seed(tmp_path_factory, scifact_small) -> Path:
    return seeded_cache(tmp_path_factory, scifact_small)


@pytest.fixture(scope="module")
def pool():
    p = EmbedderPool()
    yield p
    p.close()


@pytest.fixture
def warm(seed, workspace) -> Path:
    """A workspace cache filled by a prior evaluation of the small subset (closed: the WAL is checkpointed)."""
    workspace.cache_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(seed, workspace.cache_path)
    assert not Path(str(seed) + "-wal").exists() or Path(str(seed) + "-wal").stat().st_size == 0
    return workspace.cache_path


def run_eval(ds, cache_path, pool, *overrides, split="test"):
    cfg = apply_overrides(PipelineConfig(), list(overrides))
    cache = EmbeddingCache(cache_path)
    try:
        return evaluate_config(cfg, ds, split, cache=cache, embedders=pool)
    finally:
        cache.close()


@pytest.fixture(scope="module")
def baseline(seed, scifact_small, pool, tmp_path_factory):
    copy = tmp_path_factory.mktemp("baseline") / "c.sqlite"
    shutil.copy(seed, copy)
    ev = run_eval(scifact_small, copy, pool)
    assert ev.cache.n_embedded == 0
    return ev


@pytest.fixture(scope="module")
def tiny(scifact_small) -> Dataset:
    """20 queries of the small subset over 60 of its documents (all in the seeded cache)."""
    qids = sorted(scifact_small.qrels["test"])[:20]
    sub = Dataset(scifact_small.name, scifact_small.source, scifact_small.corpus, scifact_small.queries,
                  {"test": {q: scifact_small.qrels["test"][q] for q in qids}})
    return sub.subset(60, "test")


# ----------------------------------------------------------------------------- keys


def test_query_and_document_never_share_a_vector(tmp_path, pool):
    """mteb#5383: with empty prefixes a text embedded as a query must not be served as a document."""
    cfg = EmbeddingConfig()
    assert cfg.query_prefix == cfg.doc_prefix == ""
    emb = pool.get(cfg)
    texts = ["Aspirin reduces the risk of heart attack.", "What lowers cardiovascular risk?"]
    identity = emb.identity()
    for t in texts:
        assert cache_key(identity, "query", t) != cache_key(identity, "document", t)
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    try:
        q, qs = cache.embed(emb, texts, "query")
        assert (qs.n_hits, qs.n_embedded) == (0, 2)
        d, ds = cache.embed(emb, texts, "document")
        assert ds.n_hits == 0 and ds.n_embedded == 2
        assert cache.store.stats().entries == 4
        q2, qs2 = cache.embed(emb, texts, "query")
        assert (qs2.n_hits, qs2.n_embedded) == (2, 0)
        np.testing.assert_array_equal(q2, q)
        assert q.shape == (2, 384) and q.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-5)
    finally:
        cache.close()
    with pytest.raises(ValueError):
        cache_key(identity, "passage", "x")


def test_duplicate_texts_are_embedded_once(tmp_path, pool):
    emb = pool.get(EmbeddingConfig())
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    try:
        vecs, st = cache.embed(emb, ["same text", "other", "same text"], "document")
        assert st.n_texts == 3 and st.n_embedded == 2 and st.n_hits == 0
        np.testing.assert_array_equal(vecs[0], vecs[2])
    finally:
        cache.close()
    # no cache at all: everything embedded, nothing stored
    vecs2, st2 = EmbeddingCache(None).embed(emb, ["same text", "other"], "document")
    assert st2.n_embedded == 2 and st2.n_hits == 0
    np.testing.assert_allclose(vecs2, vecs[:2], atol=1e-6)


def _fake_model(folder: Path, weights: bytes, pooling: str = "mean") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_cls_token": pooling == "cls"}))
    return folder


def test_key_covers_model_identity(tmp_path):
    a = _fake_model(tmp_path / "a", b"\x00" * 1000)
    a_copy = _fake_model(tmp_path / "elsewhere" / "a", b"\x00" * 1000)
    b = _fake_model(tmp_path / "b", b"\x00" * 999 + b"\x01")  # one byte of the weights differs
    c = _fake_model(tmp_path / "c", b"\x00" * 1000, pooling="cls")

    def ident(model: Path, **kw) -> str:
        return create_embedder(EmbeddingConfig(model=str(model), **kw)).identity()

    base = ident(a)
    assert json.loads(base)["weights"]
    assert ident(a) == base
    assert ident(a_copy) == base  # content-addressed: the same files elsewhere are the same model
    variants = {
        "weights": ident(b),
        "pooling": ident(c),
        "max_length": ident(a, max_length=128),
        "normalize": ident(a, normalize=False),
        "dtype": ident(a, dtype="float16"),
    }
    assert len(set(variants.values()) | {base}) == len(variants) + 1
    text = "the same text"
    keys = {cache_key(i, "document", text) for i in [base, *variants.values()]}
    assert len(keys) == len(variants) + 1
    # prefixes, batch size and a truncated dimension do not change the model identity (the text carries the prefix)
    assert ident(a, batch_size=8, dim=64, query_prefix="query: ") == base
    # editing the weights in place changes the identity (the hash is memoised on size and mtime, not the path)
    (a / "model.safetensors").write_bytes(b"\x02" * 1001)
    assert ident(a) != base


def test_vllm_identity_keys_on_the_effective_token_limit(tmp_path):
    """Issue 14 item 8: vLLM cuts tokens at min(max_length, max_model_len). Two configs with the same max_length
    but a smaller max_model_len embed different tokens, so they must not share keys (the old identity keyed on
    max_length alone and served one's vectors for the other); two that cut at the same place may share them."""
    folder = _fake_model(tmp_path / "m", b"\x00" * 1000)
    (folder / "config.json").write_text('{"hidden_size": 8, "max_position_embeddings": 512}')

    def ident(**kw) -> str:
        return create_embedder(EmbeddingConfig(backend="vllm", model=str(folder), **kw)).identity()

    full, cut = ident(max_length=512), ident(max_length=512, max_model_len=128)
    assert full != cut
    assert json.loads(full)["max_tokens"] == 512 and json.loads(cut)["max_tokens"] == 128
    assert cache_key(full, "document", "t") != cache_key(cut, "document", "t")
    # max_length above the position limit cuts at the limit: the same tokens, the same key
    assert ident(max_length=1024) == full
    assert ident(max_length=128) == cut == ident(max_length=4096, max_model_len=128)


def test_st_identity_keys_on_the_resolved_dtype(tmp_path, monkeypatch):
    """Issue 14 item 8: sentence-transformers vectors come out float16 on a GPU and float32 on a CPU. The old
    identity said dtype 'auto' for both a GPU node and a CPU-pinned node on a GPU host, so a shared cache mixed
    them. The identity now names the dtype the model is loaded with (decided without torch)."""
    folder = _fake_model(tmp_path / "m", b"\x00" * 1000)

    def emb(**kw):
        return create_embedder(EmbeddingConfig(model=str(folder), **kw))

    def dtype(e) -> str:
        return json.loads(e.identity())["dtype"]

    import evolve._platform

    monkeypatch.setattr(evolve._platform, "gpu_device_nodes", lambda: ["/dev/nvidia0"])  # a GPU host's nodes
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # and a GPU id, as cuda_visible() judges it
    gpu, pinned = emb(), emb(device="cpu")
    assert (gpu.device, dtype(gpu)) == ("cuda", "float16")
    assert (pinned.device, dtype(pinned)) == ("cpu", "float32")
    assert gpu.identity() != pinned.identity()
    assert dtype(emb(device="cuda:1")) == "float16" and dtype(emb(dtype="bfloat16")) == "bfloat16"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: the default resolves to the CPU and float32
    cpu = emb()
    assert (cpu.device, dtype(cpu)) == ("cpu", "float32") and cpu.identity() == pinned.identity()


def test_st_model_loads_with_the_dtype_its_identity_names(pool):
    """The real MiniLM on this CPU: the weights are float32, as its identity says."""
    emb = pool.get(EmbeddingConfig())
    assert json.loads(emb.identity())["dtype"] == "float32"
    emb.embed(["a probe"])
    assert str(next(emb._model.parameters()).dtype) == "torch.float32"


def test_cache_key_carries_the_key_scheme():
    """Keys of the older scheme (no scheme in the hash) can never be computed again: the new keys differ from
    them, so old entries are unreachable (never wrongly served) and `cache prune` removes them."""
    import hashlib

    from evolve.cache import KEY_SCHEME, cache_keys

    def old_key(identity, kind, text):
        h = hashlib.sha256()
        for part in (identity, kind, text):
            b = part.encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        return h.digest()

    assert KEY_SCHEME == 2
    assert cache_key("m", "document", "t") != old_key("m", "document", "t")
    assert cache_keys("m", "query", ["a", "b"]) == [cache_key("m", "query", "a"), cache_key("m", "query", "b")]


def test_real_model_identity_is_cheap_and_stable():
    code = textwrap.dedent("""
        import json, sys
        from evolve.config import EmbeddingConfig
        from evolve.embedders import create_embedder
        a = create_embedder(EmbeddingConfig()).identity()
        b = create_embedder(EmbeddingConfig()).identity()
        print(json.dumps({"same": a == b, "torch": "torch" in sys.modules,
                          "st": "sentence_transformers" in sys.modules, "identity": json.loads(a)}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["same"] and not res["torch"] and not res["st"]
    ident = res["identity"]
    assert ident["backend"] == "sentence-transformers" and ident["normalize"] is True and ident["max_length"] == 256
    assert ident["pooling"] == "pooling_mode_mean_tokens" and len(ident["weights"]) == 64


# ----------------------------------------------------------------------------- cheap axes, Matryoshka


def test_cheap_axes_replay_embeds_nothing(warm, scifact_small, pool, baseline):
    pipe_cfgs = [
        ["index.type=hnsw"],
        ["index.type=hnsw", "index.hnsw_m=16", "index.hnsw_ef_search=64"],
        ["index.type=ivf", "index.ivf_nlist=4", "index.ivf_nprobe=4"],
        ["retrieval.top_k=200"],
        ["retrieval.aggregation=sum"],
        ["embedding.dim=128"],
        ["embedding.batch_size=8"],
    ]
    for overrides in pipe_cfgs:
        ev = run_eval(scifact_small, warm, pool, *overrides)
        assert ev.cache.n_embedded == 0, overrides
        assert ev.cache.n_hits == ev.cache.n_texts == 360 and ev.cache.hit_rate == 1.0
        assert 0.5 < ev.metrics["ndcg@10"] <= 1.0
        if overrides in (["retrieval.aggregation=sum"], ["embedding.batch_size=8"], ["retrieval.top_k=200"]):
            # whole documents: one chunk each, so sum == max; same ranking
            assert ev.metrics["ndcg@10"] == baseline.metrics["ndcg@10"]
    # flat index is exact; HNSW with generous ef matches it on 300 vectors
    ev = run_eval(scifact_small, warm, pool, "index.type=hnsw", "index.hnsw_ef_search=512")
    assert ev.metrics["ndcg@10"] == pytest.approx(baseline.metrics["ndcg@10"], abs=1e-9)


def test_matryoshka_dim_reuses_full_vectors(warm, scifact_small, pool, baseline):
    cfg = apply_overrides(PipelineConfig(), ["embedding.dim=128"])
    cache = EmbeddingCache(warm)
    pipe = Pipeline(cfg, scifact_small, cache=cache, embedders=pool)
    try:
        ev = pipe.evaluate(scifact_small.qrels["test"], split="test")
        assert ev.cache.n_embedded == 0 and ev.cache.hit_rate == 1.0
        assert pipe._index.d == 128 and pipe._index.ntotal == 300
        q = next(iter(pipe._qvecs.values()))
        assert q.shape == (128,)
        assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-5)  # re-normalised after truncation
        # the cache still holds full 384-d vectors only
        assert cache.store.stats().entries == 360
        key = cache_key(pool.get(cfg.embedding).identity(), "query", scifact_small.queries[sorted(pipe._qvecs)[0]])
        found = cache.store.get([key])
        assert found.keys == [key] and found.dims.tolist() == [384]
    finally:
        pipe.close()
        cache.close()
    assert ev.metrics != baseline.metrics  # truncation really changed the search
    assert 0.5 < ev.metrics["ndcg@10"] <= 1.0


# ----------------------------------------------------------------------------- incremental nights


def _edit(ds: Dataset, corpus: dict[str, Document]) -> Dataset:
    return Dataset(ds.name, ds.source, corpus, ds.queries, ds.qrels)


def test_incremental_edit_add_remove(warm, scifact_small, scifact, pool):
    ids = sorted(scifact_small.corpus)
    # edit 1% (3 of 300) of the documents
    corpus = dict(scifact_small.corpus)
    for d in ids[10:13]:
        doc = corpus[d]
        corpus[d] = Document(doc.id, doc.title, doc.text + " (revised)")
    edited = _edit(scifact_small, corpus)
    old_texts = {d.full_text for d in scifact_small.corpus.values()}
    changed = {d.full_text for d in edited.corpus.values()} - old_texts
    assert len(changed) == 3
    ev = run_eval(edited, warm, pool)
    assert ev.cache.n_embedded == len(changed) == 3
    assert ev.corpus_fingerprint != scifact_small.corpus_fingerprint()

    # the same edit again: nothing new
    assert run_eval(edited, warm, pool).cache.n_embedded == 0

    # add 2 documents and remove 2 (neither judged): only the additions are embedded
    new_ids = [d for d in sorted(scifact.corpus) if d not in scifact_small.corpus][:2]
    judged = {d for docs in scifact_small.qrels["test"].values() for d in docs}
    gone = [d for d in ids if d not in judged][:2]
    corpus2 = {d: doc for d, doc in edited.corpus.items() if d not in gone}
    corpus2.update({d: scifact.corpus[d] for d in new_ids})
    ev2 = run_eval(_edit(scifact_small, corpus2), warm, pool)
    assert ev2.n_docs == 300
    assert ev2.cache.n_embedded == 2

    # removing documents only: nothing to embed
    corpus3 = {d: doc for d, doc in corpus2.items() if d not in new_ids}
    ev3 = run_eval(_edit(scifact_small, corpus3), warm, pool)
    assert ev3.cache.n_embedded == 0 and ev3.n_docs == 298


@pytest.mark.slow
def test_one_percent_of_full_scifact_edited_embeds_only_those(tmp_path, scifact, pool):
    """All of SciFact (5,183 documents) embedded once; 1% of its documents edited (every 100th: 52); the next
    evaluation embeds exactly the edited texts, nothing else, and scores every other query as before."""
    cache_path = tmp_path / "embeddings.sqlite"
    first = run_eval(scifact, cache_path, pool)
    assert first.n_docs == 5183 and first.cache.n_embedded > 5183  # documents and test queries
    assert first.metrics["ndcg@10"] == pytest.approx(0.6451, abs=5e-4)  # MTEB: 0.64508

    corpus = dict(scifact.corpus)
    edited_ids = sorted(corpus)[::100]
    for d in edited_ids:
        doc = corpus[d]
        corpus[d] = Document(doc.id, doc.title, doc.text + " (revised)")
    changed = {corpus[d].full_text for d in edited_ids} - {d.full_text for d in scifact.corpus.values()}
    assert len(edited_ids) == len(changed) == 52

    ev = run_eval(_edit(scifact, corpus), cache_path, pool)
    assert ev.cache.n_embedded == 52
    assert run_eval(_edit(scifact, corpus), cache_path, pool).cache.n_embedded == 0
    # a query none of whose judged documents was edited keeps its exact score unless an edited text moved into
    # or out of its top 10; most do
    untouched = [q for q, docs in scifact.qrels["test"].items() if not set(docs) & set(edited_ids)]
    same = sum(ev.per_query["ndcg@10"][q] == first.per_query["ndcg@10"][q] for q in untouched)
    assert same >= 0.9 * len(untouched)


def test_incremental_with_chunking_embeds_only_changed_chunks(warm, tiny, pool):
    """Chunked documents: editing the end of one document re-embeds only the chunks whose text changed."""
    from evolve.chunking import chunk_corpus

    over = ["chunking.strategy=tokens", "chunking.size=64", "chunking.overlap=16"]
    cfg = apply_overrides(PipelineConfig(), over)
    ids = sorted(tiny.corpus)[:15]
    corpus = {d: tiny.corpus[d] for d in ids}
    first = run_eval(_edit(tiny, corpus), warm, pool, *over)
    old = {c.text for c in chunk_corpus(corpus, cfg.chunking, cfg.embedding.model)}
    assert first.n_chunks > 2 * len(ids)  # really chunked
    assert first.cache.n_embedded == len(old)  # queries come from the seeded cache

    target = max(ids, key=lambda d: (len(corpus[d].full_text), d))
    doc = corpus[target]
    edited = dict(corpus)
    edited[target] = Document(doc.id, doc.title, doc.text + " An added closing sentence about the results.")
    new = {c.text for c in chunk_corpus(edited, cfg.chunking, cfg.embedding.model)}
    changed = new - old
    n_doc_chunks = len(chunk_corpus({target: edited[target]}, cfg.chunking, cfg.embedding.model))
    assert 1 <= len(changed) < n_doc_chunks  # only the tail of that one document
    ev = run_eval(_edit(tiny, edited), warm, pool, *over)
    assert ev.cache.n_embedded == len(changed)


# ----------------------------------------------------------------------------- a fully cached run in a new process


def test_fully_cached_eval_in_new_process_loads_no_model(warm, baseline):
    code = textwrap.dedent(f"""
        import json, sys
        from evolve.cache import EmbeddingCache
        from evolve.config import load_config
        from evolve.datasets import Dataset, load_dataset
        from evolve.pipeline import evaluate_config
        sf = load_dataset("scifact")
        qids = sorted(sf.qrels["test"])[:60]  # the conftest 'scifact_small' recipe
        small = Dataset(sf.name, sf.source, sf.corpus, sf.queries,
                        {{"test": {{q: sf.qrels["test"][q] for q in qids}}}}).subset(300, "test")
        cache = EmbeddingCache({str(warm)!r})
        ev = evaluate_config(load_config(), small, "test", cache=cache)
        cache.close()
        print(json.dumps({{"torch": "torch" in sys.modules, "st": "sentence_transformers" in sys.modules,
                           "transformers": "transformers" in sys.modules,
                           "n_embedded": ev.cache.n_embedded, "metrics": ev.metrics}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n_embedded"] == 0
    assert res["torch"] is False and res["st"] is False and res["transformers"] is False
    assert res["metrics"] == baseline.metrics


# ----------------------------------------------------------------------------- concurrency and crashes

_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from evolve.cache import EmbeddingCache

    def vec(key, dim):
        return np.random.default_rng(int.from_bytes(key[:8], "little")).standard_normal(dim).astype(np.float32)

    def key(i):
        return i.to_bytes(8, "little") + b"k" * 24

    mode, path = sys.argv[1], sys.argv[2]
    if mode == "concurrent":
        wid, start = int(sys.argv[3]), float(sys.argv[4])
        while time.time() < start:
            time.sleep(0.001)
        cache = EmbeddingCache(path)
        for r in range(10):
            shared = [key(i) for i in range(r * 100, r * 100 + 100)]  # both writers write these
            own = [key(10_000 * wid + r * 100 + i) for i in range(100)]  # only this one writes these
            for batch in ((shared, own) if wid % 2 else (own, shared)):
                cache.store_vectors(batch, np.stack([vec(k, 384) for k in batch]), "model-x")
            found, damaged = cache.lookup(shared + own)
            assert len(found) == 200 and damaged == 0, (len(found), damaged)
        cache.close()
        print("ok", flush=True)
    else:  # 'forever': big transactions until killed
        cache = EmbeddingCache(path)
        i = 0
        while True:
            batch = [key(j) for j in range(i, i + 4000)]
            vectors = np.stack([vec(k, 1024) for k in batch])
            print("writing", i // 4000, flush=True)  # the transaction (16 MB) starts right after this line
            cache.store_vectors(batch, vectors, "model-y")
            i += 4000
""")


def _vec(i: int, dim: int) -> np.ndarray:
    """The writer script's ``vec(key(i), dim)``: its seed, the key's first 8 bytes, is ``i``."""
    return np.random.default_rng(i).standard_normal(dim).astype(np.float32)


def _key(i: int) -> bytes:
    return i.to_bytes(8, "little") + b"k" * 24


@pytest.mark.parametrize("race", [1, 2, 3])
def test_two_writer_processes(tmp_path, race):
    """Both start at once on a file that does not exist yet (the open itself races), three times over."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    db = tmp_path / "cache" / "embeddings.sqlite"
    start = time.time() + 2
    procs = [subprocess.Popen([sys.executable, str(script), "concurrent", str(db), str(w), str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == "ok"
        assert "damaged" not in err
    assert not list(db.parent.glob("*.damaged-*"))
    expected = list(range(1000)) + [10_000 * w + i for w in (1, 2) for i in range(1000)]
    cache = EmbeddingCache(db)
    try:
        assert cache.store.stats().entries == 3000
        found, damaged = cache.lookup([_key(i) for i in expected])
        assert damaged == 0 and len(found) == 3000
        for i in expected:
            np.testing.assert_array_equal(found[_key(i)], _vec(i, 384))
    finally:
        cache.close()


def test_sigkill_mid_write_leaves_a_consistent_cache(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    db = tmp_path / "embeddings.sqlite"
    proc = subprocess.Popen([sys.executable, str(script), "forever", str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # let two big transactions commit; once the third one starts writing frames to the WAL, kill -9
        for line in proc.stdout:
            if line.strip() == "writing 2":
                break
        else:
            pytest.fail(f"writer died: {proc.stderr.read()}")
        wal = Path(str(db) + "-wal")
        before = wal.stat().st_mtime_ns
        deadline = time.time() + 120
        while wal.stat().st_mtime_ns == before and time.time() < deadline:
            time.sleep(0.0005)
        assert time.time() < deadline, "the writer never started its third transaction"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    store = SQLiteStore(db)  # runs PRAGMA quick_check; raises StoreDamaged otherwise
    assert store._db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    n = store.stats().entries
    store.close()
    assert n in (8000, 12000), n  # whole transactions only (the third one was cut, or had just committed)

    cache = EmbeddingCache(db)
    try:
        keys = [_key(i) for i in range(n + 2000)]
        found, damaged = cache.lookup(keys)
        assert damaged == 0 and len(found) == n
        assert set(found) == set(keys[:n])
        for i in range(n):
            np.testing.assert_array_equal(found[_key(i)], _vec(i, 1024))
    finally:
        cache.close()
    assert not list(tmp_path.glob("*.damaged-*"))


# ----------------------------------------------------------------------------- damage on disk


def _truncate(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2 + 123)


def _overwrite_middle(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(b"\xff" * 4096)


@pytest.mark.parametrize("damage", [_truncate, _overwrite_middle], ids=["truncate", "overwrite-4k"])
def test_damaged_file_on_disk_is_survived(damage, tiny, seed, tmp_path, pool, caplog):
    clean = tmp_path / "clean.sqlite"
    shutil.copy(seed, clean)
    reference = run_eval(tiny, clean, pool)
    assert reference.cache.n_embedded == 0

    db = tmp_path / "ws" / "cache" / "embeddings.sqlite"
    db.parent.mkdir(parents=True)
    shutil.copy(seed, db)
    assert not Path(str(db) + "-wal").exists()
    before = db.read_bytes()
    damage(db)
    assert db.read_bytes() != before

    with caplog.at_level(logging.WARNING, logger="evolve.cache"):
        ev = run_eval(tiny, db, pool)
    warnings = [r.getMessage() for r in caplog.records if r.name == "evolve.cache" and r.levelno == logging.WARNING]
    assert warnings, "damage must be reported"
    assert ev.cache.n_embedded > 0  # whatever was lost was recomputed
    assert set(ev.per_query["ndcg@10"]) == set(reference.per_query["ndcg@10"])
    for metric, value in reference.metrics.items():
        assert ev.metrics[metric] == pytest.approx(value, abs=1e-6), metric
    assert {q: list(docs)[:10] for q, docs in ev.run.items()} == {q: list(docs)[:10] for q, docs in reference.run.items()}

    # the cache works again afterwards: the next evaluation is fully cached
    again = run_eval(tiny, db, pool)
    assert again.cache.n_embedded == 0 and again.metrics == ev.metrics


# ----------------------------------------------------------------------------- store maintenance and stats


class Clock:
    """A settable clock for the stores' day-granular recency (a test stand-in for time.time)."""

    def __init__(self, day: int = 20_000):
        self.t = day * 86_400 + 3600.0

    def __call__(self) -> float:
        return self.t

    def next_day(self) -> None:
        self.t += 86_400


def test_prune_lru_and_invalidate(tmp_path):
    clock = Clock()
    cache = EmbeddingCache(SQLiteStore(tmp_path / "c.sqlite", clock=clock))
    try:
        cache.store_vectors([_key(i) for i in range(10)], np.stack([_vec(i, 384) for i in range(10)]), "m1")
        clock.next_day()
        cache.store_vectors([_key(i) for i in range(10, 15)], np.stack([_vec(i, 384) for i in range(10, 15)]), "m2")
        clock.next_day()
        cache.lookup([_key(0), _key(1)])  # used on the newest day: survive the prune
        store = cache.store
        assert store.stats().entries == 15
        per_entry = 384 * 4 + 32 + 2 + 48
        assert store.payload_bytes() == 15 * per_entry
        removed = store.prune(per_entry * 4)
        assert removed == 11
        found, _ = cache.lookup([_key(i) for i in range(15)])
        # the two used last, then the two newest of the day before (the oldest of a day go first)
        assert set(found) == {_key(0), _key(1), _key(13), _key(14)}
        assert store.invalidate("m1") == 2
        assert store.invalidate("nope") == 0
        assert store.stats().entries == 2
        assert store.prune(None) == 0  # no limit: only unreachable entries go
        assert store.prune(0) == 2
        assert store.stats().entries == 0
    finally:
        cache.close()


def test_memory_store_is_bounded_verified_and_lru(tmp_path):
    """The server's query vectors (issue 19, defect 11): in memory only, at most max_bytes (least recently used
    go first, whatever a client sends), read back verified like any store's, and nothing written to a file."""
    from evolve.cache import MemoryStore

    per_entry = 384 * 4 + 32 + 2 + 48
    cache = EmbeddingCache(MemoryStore(max_bytes=4 * per_entry))
    try:
        cache.store_vectors([_key(i) for i in range(3)], np.stack([_vec(i, 384) for i in range(3)]), "m1")
        cache.lookup([_key(0)])  # used after 1 and 2: they go before it
        cache.store_vectors([_key(3), _key(4)], np.stack([_vec(3, 384), _vec(4, 384)]), "m1")
        store = cache.store
        assert store.stats().entries == 4 and store.payload_bytes() == 4 * per_entry
        assert set(cache.lookup([_key(i) for i in range(5)])[0]) == {_key(0), _key(2), _key(3), _key(4)}
        cache.store_vectors([_key(i) for i in range(5, 1000)], np.stack([_vec(i, 384) for i in range(5, 1000)]), "m1")
        assert store.stats().entries == 4 and store.payload_bytes() == 4 * per_entry  # a flood stays bounded
        found, damaged = cache.lookup([_key(i) for i in range(1000)])
        assert damaged == 0 and set(found) == {_key(i) for i in range(996, 1000)}
        np.testing.assert_array_equal(found[_key(999)], _vec(999, 384))
        assert store.invalidate("m2") == 0 and store.prune(2 * per_entry) == 2 and store.invalidate("m1") == 2
    finally:
        cache.close()
    assert not list(tmp_path.iterdir())


def _fill(store_path: Path, n: int, dim: int = 384, clock=None) -> list[bytes]:
    cache = EmbeddingCache(SQLiteStore(store_path, clock=clock or Clock()))
    keys = [_key(i) for i in range(n)]
    for s in range(0, n, 2000):
        cache.store_vectors(keys[s : s + 2000], np.stack([_vec(i, dim) for i in range(s, min(n, s + 2000))]), "m")
    cache.close()  # checkpoints the WAL
    return keys


def _wal(path: Path) -> int:
    wal = Path(str(path) + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_a_warm_read_writes_nothing_and_takes_no_write_lock(tmp_path):
    """Issue 14: every cache hit used to rewrite its row (last_used, under BEGIN IMMEDIATE, on a WITHOUT ROWID
    table: 20k touches wrote 83.5 MB of WAL for a 95 MB table). Now a read records the day of use apart from the
    vectors, at most once per entry and day: a second read the same day writes nothing and needs no write lock
    (it goes through while another process holds it), and the first read of a new day writes a few bytes per
    entry, not the vectors' pages."""
    import sqlite3
    import threading

    db, clock = tmp_path / "c.sqlite", Clock()
    keys = _fill(db, 4000, clock=clock)
    size = db.stat().st_size
    assert size < 4000 * 1800  # ~1.6 KB per 384-d entry (the old layout took 4.7 KB)
    cache = EmbeddingCache(SQLiteStore(db, clock=clock))
    try:
        before = _wal(db)
        hits = cache.lookup_bulk(keys)
        assert len(hits.positions) == 4000 and _wal(db) == before  # the day of the write counts as a use

        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        done = []
        reader = threading.Thread(target=lambda: done.append(cache.lookup_bulk(keys)), daemon=True)
        reader.start()
        reader.join(10)
        other.execute("ROLLBACK")
        other.close()
        assert done and len(done[0].positions) == 4000, "a warm read waited for the write lock"

        clock.next_day()
        before = _wal(db)
        assert len(cache.lookup_bulk(keys).positions) == 4000
        written = _wal(db) - before
        assert 0 < written < 0.05 * size, (written, size)
        before = _wal(db)
        cache.lookup_bulk(keys)
        assert _wal(db) == before  # once a day
    finally:
        cache.close()


def test_bulk_read_is_one_array_in_the_order_asked(tmp_path):
    db = tmp_path / "c.sqlite"
    keys = _fill(db, 3000, dim=64)
    cache = EmbeddingCache(db)
    try:
        asked = [keys[2999], b"\1" * 32, keys[5], *keys[100:2100], b"\2" * 32]
        hits = cache.lookup_bulk(asked)
        assert hits.n_damaged == 0
        assert hits.positions.tolist() == [0, 2, *range(3, 2003)]
        assert hits.vectors.shape == (2002, 64) and hits.vectors.dtype == np.float32
        assert hits.vectors.flags.c_contiguous and hits.vectors.base is not None  # a view of one read buffer
        np.testing.assert_array_equal(hits.vectors[0], _vec(2999, 64))
        np.testing.assert_array_equal(hits.vectors[2:], np.stack([_vec(i, 64) for i in range(100, 2100)]))
    finally:
        cache.close()


def test_damaged_entries_are_dropped_in_bulk(tmp_path, caplog):
    """A flipped payload byte, a cut payload and a wrong checksum: each entry is dropped, deleted and counted;
    the intact ones around it are served."""
    import sqlite3

    db = tmp_path / "c.sqlite"
    keys = _fill(db, 50, dim=16)
    con = sqlite3.connect(db)
    payload = bytearray(con.execute("SELECT payload FROM entries WHERE key=?", (keys[3],)).fetchone()[0])
    payload[7] ^= 0x40
    con.execute("UPDATE entries SET payload=? WHERE key=?", (bytes(payload), keys[3]))
    con.execute("UPDATE entries SET payload=substr(payload, 1, 60) WHERE key=?", (keys[10],))
    con.execute("UPDATE entries SET checksum=zeroblob(16) WHERE key=?", (keys[20],))
    con.commit()
    con.close()
    cache = EmbeddingCache(db)
    try:
        with caplog.at_level(logging.WARNING, logger="evolve.cache"):
            hits = cache.lookup_bulk(keys)
        assert hits.n_damaged == 3 and len(hits.positions) == 47
        assert set(hits.positions.tolist()) == set(range(50)) - {3, 10, 20}
        for row, pos in enumerate(hits.positions.tolist()):
            np.testing.assert_array_equal(hits.vectors[row], _vec(pos, 16))
        assert any("3 damaged" in r.getMessage() for r in caplog.records)
        assert cache.store.stats().entries == 47  # deleted, to be recomputed
    finally:
        cache.close()


def test_entries_of_an_older_key_scheme_are_stale_and_pruned(tmp_path):
    """A cache written before key schemes (the old ``vectors`` table) and entries of scheme 1: no key reaches
    them; stats count them as stale and `prune` without a size removes exactly them."""
    import sqlite3

    db = tmp_path / "c.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE vectors (key BLOB PRIMARY KEY, model TEXT NOT NULL, dim INTEGER NOT NULL,
            payload BLOB NOT NULL, checksum BLOB NOT NULL, last_used REAL NOT NULL) WITHOUT ROWID;
    """)
    con.executemany("INSERT INTO vectors VALUES (?, 'm', 4, ?, ?, 0)", [(bytes([i]) * 32, b"\0" * 16, b"x" * 16)
                                                                        for i in range(7)])
    con.commit()
    con.close()
    keys = _fill(db, 20, dim=8)
    con = sqlite3.connect(db)
    con.execute("UPDATE entries SET scheme = 1 WHERE id <= 5")
    con.commit()
    con.close()
    store = SQLiteStore(db)
    try:
        st = store.stats()
        assert (st.entries, st.stale_entries) == (15, 12)
        assert store.prune(None) == 12
        st = store.stats()
        assert (st.entries, st.stale_entries) == (15, 0)
        assert store._db.execute("SELECT name FROM sqlite_master WHERE name='vectors'").fetchone() is None
        assert len(store.get(keys)) == 15
    finally:
        store.close()


def test_cli_prune_removes_stale_and_derived_files(tmp_path):
    """`evolve cache prune` without a size removes unreachable entries and derived files of older layouts (the
    per-(k1, b) BM25 index folders and JSON token lists of BM25 version 1); with a size, derived files go before
    any vector."""
    from conftest import run_cli

    ws = tmp_path / "ws"
    db = ws / "cache" / "embeddings.sqlite"
    _fill(db, 30, dim=8)
    old_index = ws / "cache" / "bm25" / ("a" * 64)
    old_index.mkdir(parents=True)
    (old_index / "data.csc.index.npy").write_bytes(b"x" * 5000)
    (ws / "cache" / "bm25" / "tokens").mkdir()
    (ws / "cache" / "bm25" / "tokens" / "t.json.gz").write_bytes(b"y" * 100)
    from evolve.cache import DerivedStore

    faiss_store = DerivedStore(ws / "cache", "faiss")
    assert faiss_store.save("idx", lambda p: p.write_bytes(b"z" * 2000), {"version": "evolve-faiss-1", "model": "m"},
                            expected_bytes=2000)
    proc = run_cli("cache", "prune", "--workspace", str(ws))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("removed 0 entries; 30 left, ")
    assert proc.stdout.rstrip().endswith("; removed 2 derived files (5.1 KB)")
    assert not (ws / "cache" / "bm25" / "tokens").exists() and not old_index.exists()
    assert faiss_store.open("idx") is not None  # current layout: kept
    per = 8 * 4 + 32 + 1 + 48
    proc = run_cli("cache", "prune", "--max-size", f"{20 * per}B", "--workspace", str(ws))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("removed 10 entries; 20 left, ")
    assert "; removed 1 derived file (2." in proc.stdout  # the index and its sidecar


def test_cache_stats_fields():
    a = CacheStats(n_texts=10, n_hits=7, n_embedded=3, embed_seconds=1.23456)
    b = CacheStats(n_texts=5, n_hits=5)
    a.add(b)
    assert a.as_dict() == {"n_texts": 15, "n_hits": 12, "n_embedded": 3, "n_damaged": 0,
                           "embed_seconds": 1.2346, "cache_hit_rate": 0.8}
    assert CacheStats().hit_rate == 1.0
    assert EmbeddingCache(None).enabled is False
