"""Issue 2: end-to-end evaluation through the library on the small SciFact subset; ranx scoring; output files."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from conftest import seeded_cache

from evolve.cache import EmbeddingCache
from evolve.config import PipelineConfig, load_config
from evolve.embedders import EmbedderPool
from evolve.evaluate import (
    DEFAULT_METRICS,
    PRIMARY_METRIC,
    evaluate_run,
    mlflow_name,
    write_trec_run,
)
from evolve.pipeline import evaluate_config

SUMMARY_KEYS = {
    "metrics", "n_queries", "dataset", "split", "dataset_fingerprint", "corpus_fingerprint", "config_fingerprint",
    "n_docs", "n_chunks", "embed_seconds", "cache_hit_rate", "n_embedded", "retrieve_seconds", "rerank_seconds",
    "latency_ms", "total_seconds", "provenance",
}


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, scifact_small):
    seed = seeded_cache(tmp_path_factory, scifact_small)
    copy = tmp_path_factory.mktemp("eval-ws") / "embeddings.sqlite"
    shutil.copy(seed, copy)
    cache = EmbeddingCache(copy)
    try:
        return evaluate_config(load_config(), scifact_small, "test", cache=cache)
    finally:
        cache.close()


def test_evaluate_config_on_small_scifact(evaluation, scifact_small):
    ev = evaluation
    assert set(ev.metrics) == set(DEFAULT_METRICS) == {"ndcg@10", "recall@100", "mrr@10", "map@100"}
    m = ev.metrics
    # MiniLM on 300 SciFact abstracts: far better than chance, below perfect
    assert 0.6 < m["ndcg@10"] < 0.98
    assert 0.6 < m["mrr@10"] <= 1.0
    assert 0.5 < m["map@100"] <= m["mrr@10"] + 0.05
    assert 0.9 <= m["recall@100"] <= 1.0
    assert ev.n_queries == 60 and ev.n_docs == 300 and ev.n_chunks == 300
    assert ev.dataset_fingerprint == scifact_small.fingerprint
    assert ev.corpus_fingerprint == scifact_small.corpus_fingerprint()
    # served from the seeded cache
    assert ev.cache.n_embedded == 0 and ev.cache.hit_rate == 1.0 and ev.cache.n_texts == 360
    s = ev.summary()
    assert set(s) == SUMMARY_KEYS
    assert s["metrics"] == {k: round(v, 6) for k, v in m.items()}
    assert s["split"] == "test" and s["n_embedded"] == 0 and s["cache_hit_rate"] == 1.0
    assert set(s["provenance"]) == {"git_commit", "packages", "python", "platform"}
    json.dumps(s)


def test_per_query_scores_for_every_query(evaluation, scifact_small):
    ev = evaluation
    qids = set(scifact_small.qrels["test"])
    assert set(ev.per_query) == set(DEFAULT_METRICS)
    for metric, scores in ev.per_query.items():
        assert set(scores) == qids
        assert all(0.0 <= v <= 1.0 for v in scores.values())
        assert math.isclose(sum(scores.values()) / len(scores), ev.metrics[metric], abs_tol=1e-9)
    assert set(ev.run) == qids
    assert all(len(docs) == 100 for docs in ev.run.values())  # top_k documents of 300
    # per-query scores belong to the right query: a query whose first hit is relevant has mrr@10 == 1
    for q, docs in ev.run.items():
        best = max(docs, key=docs.get)
        rel = scifact_small.qrels["test"][q]
        assert (ev.per_query["mrr@10"][q] == 1.0) == (rel.get(best, 0) > 0)


def test_write_outputs_and_trec_round_trip(evaluation, scifact_small, tmp_path):
    out = evaluation.write(tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "metrics.json", "per_query.tsv", "run.trec"]
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(evaluation.summary()))
    assert load_config(out / "config.yaml") == evaluation.config

    # run.trec parses back: 6 columns, ranks 1..n in score order, same documents and scores (6 decimals)
    parsed: dict[str, dict[str, float]] = {}
    for line in (out / "run.trec").read_text().splitlines():
        qid, q0, doc, rank, score, tag = line.split()
        assert q0 == "Q0" and tag == "evolve"
        assert int(rank) == len(parsed.setdefault(qid, {})) + 1
        parsed[qid][doc] = float(score)
    assert parsed.keys() == evaluation.run.keys()
    for q, docs in evaluation.run.items():
        assert parsed[q].keys() == docs.keys()
        assert all(abs(parsed[q][d] - s) <= 5e-7 for d, s in docs.items())
        assert list(parsed[q].values()) == sorted(parsed[q].values(), reverse=True)
    # and scores the same with ranx
    means, _ = evaluate_run(scifact_small.qrels["test"], parsed)
    for k, v in means.items():
        assert v == pytest.approx(evaluation.metrics[k], abs=1e-9)

    lines = (out / "per_query.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert header == ["query_id", *evaluation.per_query]
    assert len(lines) == 1 + evaluation.n_queries
    for line in lines[1:]:
        qid, *vals = line.split("\t")
        for metric, v in zip(header[1:], vals):
            assert float(v) == pytest.approx(evaluation.per_query[metric][qid], abs=1e-6)


def test_evaluate_run_exact():
    qrels = {"a": {"d1": 1}, "b": {"d2": 1, "d3": 1}, "c": {"d9": 2}}
    run = {"a": {"d1": 0.9, "x": 0.5}, "b": {"x": 0.9, "d3": 0.8, "d2": 0.1}}  # c: no results at all
    # (metrics the evaluations above already compiled: ranx JIT-compiles each metric once per process)
    means, per_query = evaluate_run(qrels, run, ["mrr@10", "recall@100"])
    assert per_query["mrr@10"] == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert per_query["recall@100"] == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert means == pytest.approx({"mrr@10": 0.5, "recall@100": 2 / 3})
    # one metric, and queries out of order
    means1, pq1 = evaluate_run({"z": {"d": 1}, "y": {"e": 1}}, {"z": {"d": 1.0}, "y": {"f": 1.0, "e": 0.5}}, ["ndcg@10"])
    assert pq1["ndcg@10"]["z"] == 1.0 and pq1["ndcg@10"]["y"] == pytest.approx(1 / math.log2(3))


def test_write_trec_run_ties_and_empty(tmp_path):
    path = write_trec_run({"q2": {"b": 1.0, "a": 1.0, "c": 2.0}, "q1": {"z": 0.5}}, tmp_path / "r.trec", tag="t")
    assert path.read_text().splitlines() == [
        "q1 Q0 z 1 0.500000 t",
        "q2 Q0 c 1 2.000000 t",
        "q2 Q0 a 2 1.000000 t",
        "q2 Q0 b 3 1.000000 t",
    ]
    assert write_trec_run({}, tmp_path / "e.trec").read_text() == ""


@pytest.mark.parametrize("metric", ["ndcg@10", "recall@100", "mrr@10", "map@100", "hit_rate@5", "r-precision", "f1@10"])
def test_mlflow_names_are_accepted_by_mlflow_and_distinct(metric):
    """Every objective `evolve run --objectives` accepts becomes a metric key MLflow itself accepts (its own
    validator rejects '@'), and distinct ranx metrics keep distinct keys."""
    from mlflow.utils.validation import _validate_metric_name

    from evolve.study import parse_objectives

    assert parse_objectives(metric) == (metric,)
    _validate_metric_name(mlflow_name(metric))
    others = ["ndcg@10", "ndcg@100", "recall@10", "recall@100", "mrr@10", "map@100", "hit_rate@5", "r-precision", "f1@10"]
    assert len({mlflow_name(m) for m in others}) == len(others)
    assert mlflow_name(PRIMARY_METRIC) == "ndcg_at_10"  # the name the README and dashboards use


def test_shared_embedder_pool_reuses_model(scifact_small, tmp_path_factory):
    """Two evaluations through one pool: the second config that only changes retrieval reuses everything."""
    seed = seeded_cache(tmp_path_factory, scifact_small)
    copy = tmp_path_factory.mktemp("pool") / "c.sqlite"
    shutil.copy(seed, copy)
    pool = EmbedderPool()
    cache = EmbeddingCache(copy)
    try:
        a = evaluate_config(PipelineConfig(), scifact_small, "test", cache=cache, embedders=pool)
        b = evaluate_config(load_config(None, ["retrieval.top_k=200"]), scifact_small, "test", cache=cache, embedders=pool)
        assert len(pool._items) == 1  # one embedder served both configs
    finally:
        cache.close()
        pool.close()
    assert a.cache.n_embedded == b.cache.n_embedded == 0
    assert all(len(d) == 200 for d in b.run.values())
    assert b.metrics["ndcg@10"] == a.metrics["ndcg@10"]


def test_ranx_numba_type_safety_warning_is_silenced_at_its_source(monkeypatch):
    """ranx's jitted nDCG makes numba warn (NumbaTypeSafetyWarning, "unsafe cast from uint64 to int64") when it
    compiles, i.e. on a fresh numba cache (`make demo` on a new machine). Compiling from a fresh cache costs
    minutes of CPU, so the compile is stood in for: ranx.evaluate is wrapped to raise numba's own warning class
    the way the compile does, then run for real. evolve's call must hide exactly that warning, nothing else."""
    import warnings

    import ranx
    from numba.core.errors import NumbaTypeSafetyWarning

    real = ranx.evaluate

    def compiling_evaluate(*args, **kwargs):  # stand-in for the first (compiling) call
        warnings.warn("unsafe cast from uint64 to int64. Precision may be lost.", NumbaTypeSafetyWarning, stacklevel=2)
        warnings.warn("an unrelated warning", UserWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(ranx, "evaluate", compiling_evaluate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        means, _ = evaluate_run({"a": {"d1": 1}}, {"a": {"d1": 0.9, "x": 0.5}}, ["ndcg@10"])
    assert means == {"ndcg@10": 1.0}
    assert [type(w.message) for w in caught] == [UserWarning]
