"""Fusion of dense and sparse runs: rrf (ranx), wsum (min-max, zmuv), mnz (min-max); optimize_fusion; bad input.

Issue 14.6: agreement between the retrievers is never penalised, a document missing from a run counts at that
run's minimum, and CombMNZ refuses z-scores (known answers on tiny hand-made runs)."""

from __future__ import annotations

import shutil

import pytest

from evolve.config import FusionConfig, parse_config
from evolve.errors import ConfigError
from evolve.fusion import fuse_runs
from evolve.study import optimize_fusion

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


# dense a > b > c, sparse c > d: z-scores dense a 1.2247, b 0, c -1.2247; sparse c 1, d -1
ZD = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
ZS = {"q": {"c": 4.0, "d": 2.0}}
R = 1.5 ** 0.5  # 1.2247..., the z-score of a and -c


def test_wsum_missing_document_counts_at_the_runs_minimum():
    """zmuv: a missing from sparse counts at sparse's lowest z-score (-1), d missing from dense at dense's (-R).
    The old code (ranx wsum) counted a missing document as z = 0, the run's mean: a 0.612, b 0, d -0.5."""
    z = fuse_runs(ZD, ZS, FusionConfig(method="wsum", norm="zmuv", weight=0.5))["q"]
    assert z == pytest.approx({"a": 0.5 * R - 0.5, "b": -0.5, "c": -0.5 * R + 0.5, "d": -0.5 * R - 0.5})
    assert list(z) == ["a", "c", "b", "d"]
    # min-max: the run's minimum is 0, so a missing document counts as 0 (as before)
    mm = fuse_runs(ZD, ZS, FusionConfig(method="wsum", norm="min-max", weight=0.5))["q"]
    assert mm == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.5, "d": 0.0})
    # a document missing from a run never beats one that run retrieved last with the same other score
    w = fuse_runs({"q": {"x": 1.0, "y": 1.0, "top": 5.0}}, {"q": {"x": 0.5, "s1": 3.0, "s2": 2.0}},
                  FusionConfig(method="wsum", norm="zmuv", weight=0.5))["q"]
    assert w["x"] >= w["y"]  # old code: y (not found by sparse) 0.35 above x (found, last) -0.26


def _agreement_pairs(dense, sparse):
    """(x, y) with equal dense scores where sparse found x but not y."""
    for q in dense:
        for x, sx in dense[q].items():
            for y, sy in dense[q].items():
                if sx == sy and x in sparse[q] and y not in sparse[q]:
                    yield q, x, y


@pytest.mark.parametrize("cfg", [FusionConfig(method="rrf", rrf_k=1), FusionConfig(method="rrf", rrf_k=60),
                                 FusionConfig(method="wsum", norm="min-max", weight=0.3),
                                 FusionConfig(method="wsum", norm="zmuv", weight=0.5),
                                 FusionConfig(method="wsum", norm="zmuv", weight=0.8),
                                 FusionConfig(method="mnz", norm="min-max")], ids=str)
def test_agreement_is_never_penalised(cfg):
    """A document that both retrievers found ranks at least as high as one with the same dense score that only
    the dense retriever found, whatever its sparse score (here: the lowest the sparse run gave)."""
    dense = {"q1": {"top": 9.0, "x": 2.0, "y": 2.0, "low": 1.0}, "q2": {"x": 0.4, "y": 0.4, "z": 0.1}}
    sparse = {"q1": {"s1": 30.0, "s2": 20.0, "x": 10.0}, "q2": {"s": 5.0, "x": 1.0, "t": 4.0}}
    pairs = list(_agreement_pairs(dense, sparse))
    assert len(pairs) == 2
    out = fuse_runs(dense, sparse, cfg)
    for q, x, y in pairs:
        assert out[q][x] >= out[q][y], (cfg, q, out[q])
        assert list(out[q]).index(x) < list(out[q]).index(y)  # x is listed first (ties: by id, 'x' < 'y')


def test_mnz_refuses_zmuv_one_line():
    """CombMNZ multiplies by the hit count; under zmuv a below-mean document found by both runs got a larger
    *negative* score than one found by one run (old code: dense x -1.22 * 2 hits below y -0.61 * 1)."""
    msg = ("fusion.norm: expected min-max for fusion.method 'mnz' (CombMNZ multiplies by the hit count, so its "
           "scores must not be negative), got 'zmuv'")
    with pytest.raises(ConfigError) as err:
        parse_config({"fusion": {"method": "mnz", "norm": "zmuv"}})
    assert err.value.message == msg
    bypass = FusionConfig(method="mnz").model_copy(update={"norm": "zmuv"})  # model_copy skips validation
    with pytest.raises(ConfigError) as err:
        fuse_runs(DENSE, SPARSE, bypass)
    assert err.value.message == msg
    assert parse_config({"fusion": {"method": "wsum", "norm": "zmuv"}}).fusion.norm == "zmuv"


@pytest.mark.parametrize("name", ["search_space.yaml", "search_space_large.yaml", "search_space_rerank.yaml",
                                  "search_space_korean.yaml"])
def test_shipped_search_spaces_never_propose_mnz_with_zmuv(name):
    """120 trials of a real Optuna random sampler over each shipped space: every proposal is a valid config,
    mnz always with min-max, and mnz is still proposed where the space offers it."""
    import optuna

    from evolve.config import shipped_path
    from evolve.search_space import load_search_space

    space = load_search_space(shipped_path("configs", name))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    methods = set()
    for _ in range(120):
        trial = study.ask()
        cfg = space.config_for(space.sample(trial))
        study.tell(trial, 0.0)
        if cfg.retrieval.mode == "hybrid":
            methods.add((cfg.fusion.method, cfg.fusion.norm))
    assert ("mnz", "zmuv") not in methods
    offered = space.params["fusion.method"].choices
    assert ("mnz" in offered) == (("mnz", "min-max") in methods)


def test_optimize_fusion_tunes_the_wsum_that_runs():
    """The weight that optimize_fusion returns is the best on the grid for the fusion that fuse_runs does.
    The old code tuned ranx's zmuv wsum (missing documents at the mean) and returned 0.9, which scores 0.644
    under the fusion that runs, against 0.710 at 0.5."""
    from evolve.evaluate import evaluate_run

    grid = [round(0.1 * i, 1) for i in range(11)]  # the documented grid: 0.0, 0.1, ..., 1.0

    dense = {"q0": {"d1": 0.82, "d0": 0.96, "d4": 0.57, "d2": 0.17}, "q1": {"d1": 0.39, "d3": 0.5, "d0": 0.02, "d2": 0.61},
             "q2": {"d3": 0.1, "d1": 0.38, "d2": 0.55, "d5": 0.91}}
    sparse = {"q0": {"d5": 2.0, "d4": 1.0, "d0": 5.7, "d1": 9.0}, "q1": {"d3": 2.0, "d2": 3.3, "d0": 9.9, "d5": 7.8},
              "q2": {"d5": 2.3, "d4": 7.3, "d3": 0.8, "d2": 1.7}}
    qrels = {"q0": {"d4": 1}, "q1": {"d2": 1}, "q2": {"d4": 1}}

    def score(w):
        cfg = FusionConfig(method="wsum", norm="zmuv", weight=w)
        return evaluate_run(qrels, fuse_runs(dense, sparse, cfg), ["ndcg@10"])[0]["ndcg@10"]

    tuned = optimize_fusion(qrels, dense, sparse, FusionConfig(method="wsum", norm="zmuv", weight=0.9))
    assert score(tuned.weight) == pytest.approx(max(score(w) for w in grid))
    assert score(tuned.weight) > score(0.9) + 0.05


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
