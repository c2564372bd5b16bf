"""Fusion of dense and sparse runs with ranx: rrf, wsum (min-max, zmuv), mnz; optimize_fusion; bad input."""

from __future__ import annotations

import shutil

import pytest

from evolve.config import FusionConfig, parse_config
from evolve.errors import ConfigError
from evolve.fusion import fuse_runs, optimize_fusion

DENSE = {"q1": {"a": 0.9, "b": 0.8, "c": 0.1}, "q2": {"x": 1.0}}
SPARSE = {"q1": {"c": 10.0, "a": 5.0, "d": 1.0}, "q3": {"y": 2.0}}


def test_rrf_known_scores():
    out = fuse_runs(DENSE, SPARSE, FusionConfig(method="rrf", rrf_k=1))
    assert out["q1"] == pytest.approx({"a": 1 / 2 + 1 / 3, "c": 1 / 4 + 1 / 2, "b": 1 / 3, "d": 1 / 4})
    assert list(out["q1"]) == ["a", "c", "b", "d"]


def test_wsum_min_max_known_scores():
    out = fuse_runs(DENSE, SPARSE, FusionConfig(method="wsum", weight=0.5, norm="min-max"))
    # dense min-max: a 1, b 0.875, c 0; sparse: c 1, a 4/9, d 0
    assert out["q1"] == pytest.approx({"a": 0.5 + 0.5 * 4 / 9, "c": 0.5, "b": 0.4375, "d": 0.0})
    dense_only = fuse_runs(DENSE, SPARSE, FusionConfig(method="wsum", weight=1.0))
    assert list(dense_only["q1"])[:3] == ["a", "b", "c"]
    sparse_only = fuse_runs(DENSE, SPARSE, FusionConfig(method="wsum", weight=0.0))
    assert list(sparse_only["q1"])[:2] == ["c", "a"]  # b and d tie at 0


def test_wsum_zmuv_and_mnz():
    z = fuse_runs(DENSE, SPARSE, FusionConfig(method="wsum", norm="zmuv", weight=0.5))
    assert set(z["q1"]) == {"a", "b", "c", "d"} and list(z["q1"])[0] == "a"
    mnz = fuse_runs(DENSE, SPARSE, FusionConfig(method="mnz"))
    # CombMNZ: (sum of min-max scores) x (number of runs that found the doc)
    assert mnz["q1"] == pytest.approx({"a": (1 + 4 / 9) * 2, "c": 1.0 * 2, "b": 0.875, "d": 0.0})


def test_union_truncated_to_k_and_one_sided_queries_kept():
    out = fuse_runs(DENSE, SPARSE, FusionConfig(method="rrf"), k=2)
    assert len(out["q1"]) == 2 and list(out["q1"]) == ["a", "c"]
    assert out["q2"] == {"x": 1.0} and out["q3"] == {"y": 2.0}


def test_optimize_fusion_tunes_params():
    dense = {f"q{i}": {"rel": 0.5, "n1": 0.9, "n2": 0.1} for i in range(5)}
    sparse = {f"q{i}": {"rel": 9.0, "n1": 1.0, "n3": 0.5} for i in range(5)}
    qrels = {f"q{i}": {"rel": 1} for i in range(5)}
    tuned = optimize_fusion(qrels, dense, sparse, FusionConfig(method="wsum", weight=0.9))
    assert tuned.weight < 0.65  # only weights below 0.653 put the relevant document first
    assert fuse_runs(dense, sparse, tuned)["q0"] and list(fuse_runs(dense, sparse, tuned)["q0"])[0] == "rel"
    assert optimize_fusion(qrels, dense, sparse, FusionConfig(method="mnz")) == FusionConfig(method="mnz")


def test_optimize_fusion_rrf_known_answer():
    """Only rrf_k <= 10 ranks the relevant document above x: rel = 1/(k+1) (dense rank 1, not in the sparse list),
    x = 1/(k+21) + 1/(k+22) (rank 22 in dense, 21 in sparse), so rel > x iff k < 11. On ranx's grid (10, 20, ...,
    100) the answer is 10, and nothing else gives the same nDCG@10."""
    from evolve.evaluate import evaluate_run

    dense = {f"q{i}": {"rel": 1.0, **{f"d{j}": 0.9 - 0.01 * j for j in range(20)}, "x": 0.1, "s0": 0.05}
             for i in range(3)}
    sparse = {f"q{i}": {**{f"s{j}": 1.0 - 0.01 * j for j in range(20)}, "x": 0.1} for i in range(3)}
    qrels = {f"q{i}": {"rel": 1} for i in range(3)}
    rrf = optimize_fusion(qrels, dense, sparse, FusionConfig(method="rrf", rrf_k=60))
    assert rrf == FusionConfig(method="rrf", rrf_k=10)
    assert list(fuse_runs(dense, sparse, rrf)["q0"])[:3] == ["s0", "rel", "d0"]
    assert list(fuse_runs(dense, sparse, FusionConfig(method="rrf", rrf_k=60))["q0"])[:3] == ["s0", "x", "rel"]
    ndcg = {k: evaluate_run(qrels, fuse_runs(dense, sparse, FusionConfig(method="rrf", rrf_k=k)), ["ndcg@10"])[0]["ndcg@10"]
            for k in range(10, 101, 10)}
    assert ndcg[10] > max(v for k, v in ndcg.items() if k != 10)


def test_bad_fusion_input_one_line():
    with pytest.raises(ConfigError, match=r"^fusion.weight: expected a number in \[0, 1\], got 1.5$"):
        parse_config({"fusion": {"weight": 1.5}})
    with pytest.raises(ConfigError, match=r"^fusion.method: expected .*got 'rff'"):
        parse_config({"fusion": {"method": "rff"}})


def test_hybrid_pipeline_scifact_small(scifact_small, tmp_path, tmp_path_factory):
    """RRF of MiniLM and BM25 beats neither-worse-than the weaker of the two on a small SciFact slice."""
    from conftest import seeded_cache

    from evolve.cache import EmbeddingCache
    from evolve.pipeline import evaluate_config

    shutil.copy(seeded_cache(tmp_path_factory, scifact_small), tmp_path / "e.sqlite")  # MiniLM vectors, embedded once
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    res = {}
    for mode in ("dense", "sparse", "hybrid"):
        cfg = parse_config({"retrieval": {"mode": mode}, "fusion": {"method": "rrf", "rrf_k": 10}})
        ev = evaluate_config(cfg, scifact_small, "test", cache=cache)
        res[mode] = ev.metrics["ndcg@10"]
        assert all(len(d) <= 100 for d in ev.run.values())
    assert res["hybrid"] >= min(res["dense"], res["sparse"]), res
