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


def test_bm25_index_cache_memory_then_disk(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")
    cfg = SparseConfig(tokenizer="english", k1=1.2, b=0.75)
    clear_memory()
    before = dict(STATS)
    a = build_bm25(CORPUS, cfg, cache)
    assert a.source == "built" and STATS["built"] == before["built"] + 1
    assert (tmp_path / "cache" / "bm25" / a.key / "evolve.json").is_file()
    assert build_bm25(CORPUS, cfg, cache).source == "memory"
    clear_memory()  # a fresh process: the on-disk copy is loaded, nothing is rebuilt
    b = build_bm25(CORPUS, cfg, cache)
    assert b.source == "disk" and STATS["disk"] == before["disk"] + 1 and STATS["built"] == before["built"] + 1
    q = ["mitochondria ATP cell"]
    assert (a.search(q, 3)[1] == b.search(q, 3)[1]).all()
    # other k1/b: a new index, built from the tokens kept for this tokenizer (no second tokenisation)
    c = build_bm25(CORPUS, SparseConfig(tokenizer="english", k1=0.5, b=0.3), cache)
    assert c.source == "built" and c.key != a.key and STATS["tokenized"] == before["tokenized"] + 1
    # other texts: other key
    assert build_bm25(CORPUS[:-1], cfg, cache).key != a.key


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
