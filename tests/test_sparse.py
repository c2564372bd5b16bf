"""BM25 (bm25s) with the english, korean, regex and auto tokenizers; the on-disk index cache; KorQuAD numbers."""

from __future__ import annotations

import pytest
from conftest import shared_dataset

from evolve.cache import EmbeddingCache
from evolve.config import SparseConfig, parse_config
from evolve.errors import ConfigError
from evolve.sparse import STATS, build_bm25, clear_memory, get_tokenizer, tokenize

CORPUS = [
    "The mitochondria is the powerhouse of the cell and produces ATP.",
    "Proteins fold into three-dimensional structures with the help of chaperones.",
    "Paris is the capital and most populous city of France.",
    "Running marathons improves cardiovascular health in adults.",
    "서울은 대한민국의 수도이며 가장 큰 도시이다.",
    "김치는 배추와 고춧가루로 만드는 한국의 전통 발효 음식이다.",
]


def test_english_stems_and_drops_stopwords():
    toks = tokenize(["The proteins were folding quickly in the cells"], "english")[0]
    assert "protein" in toks and "fold" in toks and "cell" in toks
    assert "the" not in toks and "in" not in toks


def test_korean_keeps_content_morphemes():
    toks = tokenize(["대한민국의 수도는 서울이며, 인구는 약 950만 명이다."], "korean")[0]
    for want in ("대한민국", "수도", "서울", "인구", "950"):
        assert want in toks
    for particle in ("의", "는", "이며", "이다", ","):
        assert particle not in toks


def test_regex_plain_lowercase_words():
    assert tokenize(["Hello, World! 42 times; 안녕하세요"], "regex") == [["hello", "world", "42", "times", "안녕하세요"]]


def test_auto_routes_by_script():
    en, ko = tokenize(["Proteins were folding", "서울은 한국의 수도이다"], "auto")
    assert en == tokenize(["Proteins were folding"], "english")[0]
    assert ko == tokenize(["서울은 한국의 수도이다"], "korean")[0]
    assert "서울" in ko and "protein" in en


def test_unknown_tokenizer_one_line():
    with pytest.raises(ConfigError, match=r"^sparse.tokenizer: expected one of .*got 'englsh' \(did you mean 'english'\?\)$"):
        parse_config({"sparse": {"tokenizer": "englsh"}})
    with pytest.raises(ConfigError, match="did you mean 'korean'"):
        get_tokenizer("korena")


def test_bm25_known_answers_mixed_corpus(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    idx = build_bm25(CORPUS, SparseConfig(tokenizer="auto"), cache)
    scores, ids = idx.search(["what is the capital of France", "한국의 수도는 어디인가", "protein folding chaperone",
                              "zzzz qqqq"], 10)
    assert scores.shape == ids.shape == (4, 10)
    assert scores.dtype.name == "float32" and ids.dtype.name == "int64"
    assert ids[0, 0] == 2 and ids[1, 0] == 4 and ids[2, 0] == 1
    assert (ids[3] == -1).all() and (scores[3] == 0).all()  # nothing matches: all padding
    assert (ids[:, 6:] == -1).all()  # k beyond the corpus is padded
    assert (scores[0, :-1] >= scores[0, 1:]).all()


def test_bm25_tokenised_once_scored_per_k1_b(tmp_path):
    """Issue 14: k1 and b are continuous, and every sparse trial saved a new index (about 0.5 GB at a million
    chunks) that `cache prune` never removed. Now the corpus is tokenised once per (texts, tokenizer) into term
    statistics, saved once (an .npz, not JSON), and each (k1, b) is scored from them in memory."""
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    cfg = SparseConfig(tokenizer="english", k1=1.2, b=0.75)
    clear_memory()
    before = dict(STATS)
    a = build_bm25(CORPUS, cfg, cache)
    assert a.source == "built" and STATS["tokenized"] == before["tokenized"] + 1
    folder = tmp_path / "cache" / "bm25"
    assert sorted(p.suffix for p in folder.iterdir()) == [".bin", ".json"]  # one artefact: data + sidecar
    assert build_bm25(CORPUS, cfg, cache).source == "memory"
    for k1, b in ((0.5, 0.3), (0.9, 0.4), (1.7, 0.9), (2.5, 0.0)):
        other = build_bm25(CORPUS, SparseConfig(tokenizer="english", k1=k1, b=b), cache)
        assert other.source == "scored" and other.key != a.key
    assert STATS["tokenized"] == before["tokenized"] + 1
    assert len(list(folder.iterdir())) == 2  # still one artefact on disk, whatever the k1/b
    clear_memory()  # a fresh process: the statistics are loaded, nothing is tokenised
    b = build_bm25(CORPUS, cfg, cache)
    assert b.source == "disk" and STATS["tokenized"] == before["tokenized"] + 1
    q = ["mitochondria ATP cell", "capital of France"]
    assert (a.search(q, 3)[1] == b.search(q, 3)[1]).all() and (a.search(q, 3)[0] == b.search(q, 3)[0]).all()
    # other texts or another tokenizer: other statistics
    assert build_bm25(CORPUS[:-1], cfg, cache).key != a.key
    assert build_bm25(CORPUS, SparseConfig(tokenizer="regex"), cache).source == "built"
    assert len(list(folder.iterdir())) == 6
    cache.close()


def test_bm25_scores_are_bm25s_scores_exactly():
    """Known answer: the score matrix computed from term statistics is bitwise bm25s' own (Lucene), for several
    (k1, b) and with empty documents; searching it ranks as bm25s' retrieve does (queries with unknown and
    repeated terms included), scores equal to float32 rounding of the sum."""
    import random

    import bm25s
    import numpy as np

    from evolve.sparse import BM25Index, TermStats
    from evolve.sparse._bm25 import _score_matrix

    rng = random.Random(0)
    words = [f"w{i}" for i in range(300)]
    docs = [" ".join(rng.choices(words, weights=[1 / (i + 1) for i in range(300)], k=rng.randint(0, 40)))
            for _ in range(400)]
    toks = tokenize(docs, "regex")
    stats = TermStats.from_tokens(toks)
    query_texts = ["w1 w2 w50", "w7 w7 w299", "zzz", "w0", "w120 w130 w140 w150"]
    for k1, b in ((0.9, 0.4), (1.2, 0.75), (2.0, 0.0), (0.0, 1.0)):
        ref = bm25s.BM25(k1=k1, b=b, method="lucene")
        ref.index(toks, show_progress=False)
        m = _score_matrix(stats, k1, b)
        ours = {(t, int(m.indices[j])): m.data[j] for t, i in stats.vocab.items() for j in range(m.indptr[i], m.indptr[i + 1])}
        sc = ref.scores
        theirs = {(t, int(sc["indices"][j])): sc["data"][j] for t, i in ref.vocab_dict.items()
                  if i + 1 < len(sc["indptr"]) for j in range(sc["indptr"][i], sc["indptr"][i + 1])}
        assert ours.keys() == theirs.keys() and all(ours[c] == theirs[c] for c in ours)

        idx = BM25Index(m, stats.vocab, "regex", len(docs), "k", "built")
        got_s, got_i = idx.search(query_texts, 25)
        r = ref.retrieve(tokenize(query_texts, "regex"), k=25, show_progress=False, n_threads=0)
        for q in range(len(query_texts)):
            hit = r.scores[q] > 0
            want = sorted(zip(-r.scores[q][hit], r.documents[q][hit]))
            np.testing.assert_allclose(got_s[q][: hit.sum()], [-s for s, _ in want], rtol=1e-6)
            assert (got_i[q][hit.sum():] == -1).all() and (got_s[q][hit.sum():] == 0).all()
            # same documents, in the same order wherever scores are not tied
            assert set(got_i[q][: hit.sum()].tolist()) == {int(d) for _, d in want} or hit.sum() == 25
        assert (got_i[2] == -1).all()  # no known term: nothing


def test_prune_removes_bm25_statistics_and_old_indexes(tmp_path):
    """Statistics are derived files: `cache prune` with a size removes them before any vector; the per-(k1, b)
    index folders of BM25 version 1 go on any prune."""
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    clear_memory()
    build_bm25(CORPUS, SparseConfig(tokenizer="regex"), cache)
    old = tmp_path / "cache" / "bm25" / ("0" * 64)
    old.mkdir()
    (old / "evolve.json").write_text('{"version": "evolve-bm25-1"}')
    res = cache.prune()
    assert res.files == 1 and not old.exists() and len(list((tmp_path / "cache" / "bm25").iterdir())) == 2
    res = cache.prune(0)
    assert res.files == 1 and not list((tmp_path / "cache" / "bm25").iterdir())
    cache.close()


def test_bm25_in_pipeline_scifact_small(scifact_small):
    from evolve.pipeline import evaluate_config

    ev = evaluate_config(parse_config({"retrieval": {"mode": "sparse"}}), scifact_small, "test")
    assert ev.metrics["ndcg@10"] > 0.6
    assert all(len(docs) <= 100 for docs in ev.run.values())


@pytest.mark.slow
def test_korquad_korean_beats_regex(tmp_path):
    """Acceptance: kiwipiepy content morphemes >= 0.95 nDCG@10 over all 2,959 queries, above regex tokens."""
    from evolve.datasets import load_dataset
    from evolve.pipeline import evaluate_config

    ds = load_dataset(shared_dataset("korquad") / "KorQuAD_v1.0_dev.articles-A.json")
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    got = {}
    for tok in ("korean", "regex"):
        cfg = parse_config({"retrieval": {"mode": "sparse"}, "sparse": {"tokenizer": tok, "k1": 0.9, "b": 0.4}})
        got[tok] = evaluate_config(cfg, ds, "test", cache=cache).metrics["ndcg@10"]
    assert got["korean"] >= 0.95, got
    assert got["korean"] > got["regex"], got
