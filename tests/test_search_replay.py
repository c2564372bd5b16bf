"""Issue 21: the replay harness on a small synthetic table with a known optimum (no pipeline runs: fast). The
strategies are the real samplers ``evolve run --strategy`` uses, driven through the real ``SearchSpace.sample``."""

from __future__ import annotations

import math
import sys

import pytest

SPACE = """\
base: default
params:
  chunking.strategy: {choices: [none, tokens]}
  chunking.size: {choices: [128], when: {chunking.strategy: [tokens]}}
  chunking.overlap: {choices: [0], when: {chunking.strategy: [tokens]}}
  retrieval.mode: {choices: [dense, sparse, hybrid]}
  embedding.model: {choices: [all-MiniLM-L6-v2, all-mpnet-base-v2]}
  sparse.k1: {float: [0.5, 1.5], when: {retrieval.mode: [sparse, hybrid]}}
  fusion.method: {choices: [rrf, wsum], when: {retrieval.mode: [hybrid]}}
"""
# stage costs: a dense stage per (model, chunking), BM25 per chunking; each warm trial 1 s
DENSE = {
    ("all-MiniLM-L6-v2", "none"): 100.0,
    ("all-MiniLM-L6-v2", "tokens"): 200.0,
    ("all-mpnet-base-v2", "none"): 400.0,
    ("all-mpnet-base-v2", "tokens"): 800.0,
}
BM25 = {"none": 10.0, "tokens": 20.0}
OPTIMUM = {
    "chunking.strategy": "tokens",
    "retrieval.mode": "hybrid",
    "embedding.model": "all-mpnet-base-v2",
    "sparse.k1": 1.0,
    "fusion.method": "wsum",
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The space's lattice (k1 on 3 points: 0.5, 1.0, 1.5) as a table: scores from a fixed formula with one best
    config (OPTIMUM, tune 0.5 + 0.05 + 0.15 + 0.1 + 0.05 = 0.85); stage costs from DENSE and BM25."""
    from evolve.search_space import load_search_space
    from evolve.study._strategy import space_configs, space_lattice
    from evolve.study.replay import Row, Table

    path = tmp_path_factory.mktemp("replay") / "space.yaml"
    path.write_text(SPACE)
    space = load_search_space(str(path))
    lattice = space_lattice(space, 3)
    assert lattice["sparse.k1"] == [0.5, 1.0, 1.5]
    rows = {}
    stage_seconds = {}
    for c in space_configs(space, lattice):
        config = space.config_for(c.params)
        for s in c.stages:
            parts = s.split("|")  # dense|backend:model:max_length|chunking|prefix, bm25|chunking|tokenizer
            if parts[0] == "dense":
                stage_seconds[s] = DENSE[(parts[1].split(":")[1], parts[2].split("-")[0])]
            else:
                stage_seconds[s] = BM25[parts[1].split("-")[0]]
        score = 0.5
        score += 0.05 * (config.chunking.strategy == "tokens")
        score += {"dense": 0.0, "sparse": 0.05, "hybrid": 0.15}[config.retrieval.mode]
        if config.retrieval.mode != "sparse":
            score += 0.1 * (config.embedding.model == "all-mpnet-base-v2")
        if config.retrieval.mode != "dense":
            score -= 0.1 * abs(config.sparse.k1 - 1.0)
        if config.retrieval.mode == "hybrid":
            score += 0.05 * (config.fusion.method == "wsum")
        rows[c.key] = Row(
            c.key, c.params, c.stages, 1.0, round(score, 6), round(score - 0.01, 6), round(score - 0.02, 6)
        )
    table = Table(rows, stage_seconds, {s: 10 for s in stage_seconds}, {"lattice_points": 3})
    return space, table


def test_the_synthetic_table_has_its_known_optimum(synthetic):
    from evolve.study._strategy import effective_key

    space, table = synthetic
    # whole documents: dense 2 models + sparse 3 k1 + hybrid 2 x 3 x 2 = 17; the same with tokens: 34
    assert len(table.rows) == 34
    assert table.best.key == effective_key(space.config_for({**OPTIMUM, "chunking.size": 128, "chunking.overlap": 0}))
    assert table.best.tune == pytest.approx(0.85)


def test_a_gpu_rate_reweights_its_models_stages_and_nothing_else(synthetic):
    """Hand-derived: with mpnet's whole-document stage embedding 8 texts and its token stage 20, at 4 texts/s
    they cost 2 s and 5 s (were 400 and 800); MiniLM's dense stages and BM25 keep their seconds, warm trials too;
    a rate for a model no stage uses, or a rate of 0, is one line."""
    from evolve.errors import ConfigError
    from evolve.study.replay import Table

    space, table = synthetic
    texts = {s: (8 if "|none|" in s else 20) if "all-mpnet-base-v2" in s else 1000 for s in table.stage_seconds}
    gpu = Table(table.rows, table.stage_seconds, texts, {}).reweighted({"all-mpnet-base-v2": 4.0})
    mpnet = {s.split("|")[2]: sec for s, sec in gpu.stage_seconds.items() if "all-mpnet-base-v2" in s}
    assert mpnet == {"none": 2.0, "tokens-128-0": 5.0}
    assert all(sec == table.stage_seconds[s] for s, sec in gpu.stage_seconds.items() if "all-mpnet-base-v2" not in s)
    assert gpu.all_stage_seconds() == table.all_stage_seconds() - 1200 + 7
    assert gpu.rows is table.rows and gpu.meta["stage_rates"] == {"all-mpnet-base-v2": 4.0}
    with pytest.raises(ConfigError, match=r"expected a model of this table's stages \(all-MiniLM-L6-v2, "
                                          r"all-mpnet-base-v2\), got 'bge-m3'"):
        table.reweighted({"bge-m3": 100.0})
    with pytest.raises(ConfigError, match=r"expected texts per second > 0, got 0.0"):
        table.reweighted({"all-MiniLM-L6-v2": 0.0})


@pytest.mark.parametrize(
    "overrides, models",
    [
        (["retrieval.mode=hybrid"], ["all-MiniLM-L6-v2", None]),
        (["retrieval.mode=dense", "embedding.model=org/m:rev", "embedding.query_prefix=q: "], ["org/m:rev"]),
        (["retrieval.mode=sparse", "rerank.transport=bi-encoder", "rerank.model=org/m:rev", "rerank.query_prefix=q: "],
         [None, "org/m:rev"]),
    ],
)
def test_the_stage_model_is_read_back_from_every_key_stage_keys_writes(overrides, models):
    """The model of each stage key the loop writes (dense and rerank keys, a model name holding ':', prefixes);
    None for BM25."""
    from evolve.config import PipelineConfig, apply_overrides
    from evolve.study._strategy import stage_keys
    from evolve.study.replay import _stage_model

    keys = stage_keys(apply_overrides(PipelineConfig(), overrides))
    assert [_stage_model(k) for k in keys] == models, keys


def test_the_oracle_pays_only_the_cheapest_config_within_the_tolerance(synthetic):
    """Hand-derived: only OPTIMUM is within 0.005 of 0.85 (every other config scores 0.80 or less): mpnet on tokens
    800 + BM25 on tokens 20 + its warm trial 1 = 821 s. Within 0.051 the 0.80 configs are in too, and the cheapest
    of them is mpnet's wsum hybrid on whole documents (k1 1.0): 400 + 10 + 1 = 411 s."""
    space, table = synthetic
    assert table.oracle_seconds(0.005) == 821.0
    assert table.oracle_seconds(0.051) == 411.0


def test_the_clock_charges_a_stage_once_and_the_warm_trial_every_time(synthetic):
    """Hand-derived: MiniLM dense on whole documents costs 100 + 1; a second config on the same vectors 1; a
    sparse config 10 + 1; a hybrid on both paid stages 1; mpnet on tokens with BM25 on tokens 800 + 20 + 1."""
    from evolve.study.replay import Clock

    space, table = synthetic

    def row(**params):
        from evolve.study._strategy import effective_key

        return table.rows[effective_key(space.config_for(params))]

    clock = Clock(table.stage_seconds)
    steps = [
        (row(**{"chunking.strategy": "none", "retrieval.mode": "dense", "embedding.model": "all-MiniLM-L6-v2"}), 101.0),
        (row(**{"chunking.strategy": "none", "retrieval.mode": "dense", "embedding.model": "all-MiniLM-L6-v2"}), 1.0),
        (row(**{"chunking.strategy": "none", "retrieval.mode": "sparse", "sparse.k1": 0.5}), 11.0),
        (
            row(
                **{
                    "chunking.strategy": "none",
                    "retrieval.mode": "hybrid",
                    "embedding.model": "all-MiniLM-L6-v2",
                    "sparse.k1": 1.5,
                    "fusion.method": "rrf",
                }
            ),
            1.0,
        ),
        (row(**{**OPTIMUM, "chunking.size": 128, "chunking.overlap": 0}), 821.0),
    ]
    for r, cost in steps:
        assert clock.charge(r) == pytest.approx(cost)
    assert clock.seconds == pytest.approx(101 + 1 + 11 + 1 + 821)


def test_snap_moves_a_continuous_proposal_to_the_nearest_lattice_point():
    from evolve.study.replay import snap

    lattice = {"sparse.k1": [0.5, 1.0, 1.5], "fusion.method": ["rrf", "wsum"]}
    assert snap({"sparse.k1": 0.74, "fusion.method": "wsum"}, lattice) == {"sparse.k1": 0.5, "fusion.method": "wsum"}
    assert snap({"sparse.k1": 1.26}, lattice) == {"sparse.k1": 1.5}


@pytest.mark.parametrize("strategy", ["tpe", "random", "grid", "greedy", "cost"])
def test_each_strategy_is_deterministic_given_its_seed_and_finds_the_optimum(synthetic, strategy):
    """Same seed, same night (configs, clock, incumbent); run to exhaustion, every strategy ends on the table's
    optimum with the clock at the sum of every stage once plus one warm second per config."""
    from evolve.study.replay import replay

    space, table = synthetic
    a = replay(table, space, strategy, seed=7)
    b = replay(table, space, strategy, seed=7)
    assert a.keys == b.keys and a.seconds == b.seconds and a.best_tune == b.best_tune
    assert len(a.keys) == len(set(a.keys)), "a repeat was charged"
    if len(a.keys) == len(table.rows):
        assert a.best_tune[-1] == pytest.approx(0.85) and a.best_judge[-1] == pytest.approx(0.84)
        assert a.seconds[-1] == pytest.approx(table.all_stage_seconds() + len(table.rows))
        assert "exhausted" in a.stopped
    else:  # stopped by repeats in a row (TPE and random may land on done configs 25 times in a row)
        assert "repeated done configs" in a.stopped
    if strategy in ("random", "cost"):
        c = replay(table, space, strategy, seed=8)
        assert c.keys != a.keys  # the seed matters


def test_grid_follows_the_axis_order_and_a_trial_budget_holds(synthetic):
    from evolve.study.replay import replay

    space, table = synthetic
    t = replay(table, space, "grid", seed=0, max_trials=5)
    assert len(t.keys) == 5 and t.stopped is None
    first = table.rows[t.keys[0]]
    assert first.params["chunking.strategy"] == "none" and first.params["retrieval.mode"] == "dense"
    assert t.time_to(0.85) == math.inf


def test_cost_aware_explores_warm_configs_before_paying_a_new_stage(synthetic):
    """After a trial pays a new stage, the next trials (up to 4) reuse it: they cost the warm second only."""
    from evolve.study.replay import Clock, replay

    space, table = synthetic
    t = replay(table, space, "cost", seed=3, max_trials=12)
    clock = Clock(table.stage_seconds)
    costs = [clock.charge(table.rows[k]) for k in t.keys]
    assert costs[0] > 1.0
    assert costs[1:3] == [1.0, 1.0], costs


def test_the_replay_script_writes_its_table_and_curves(synthetic, tmp_path, monkeypatch):
    """benchmarks/search_replay.py end to end on the synthetic table (3 seeds): a row per strategy, the paired test,
    and a PNG."""
    import importlib.util

    from conftest import REPO

    space, table = synthetic
    folder = tmp_path / "table"
    (tmp_path / "space.yaml").write_text(SPACE)
    table.meta = {"space": str(tmp_path / "space.yaml"), "lattice_points": 3}
    table.write(folder)
    spec = importlib.util.spec_from_file_location("search_replay", REPO / "benchmarks" / "search_replay.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # importable by name, as a worker unpickles its function
    spec.loader.exec_module(mod)
    assert mod.main(["--table", str(folder), "--seeds", "3", "--out", str(tmp_path / "out" / "replay")]) == 0
    text = (tmp_path / "out" / "replay.txt").read_text()
    for name in ("tpe", "random", "grid", "greedy", "cost"):
        assert f"| {name} |" in text
    assert "best tune 0.8500" in text and "paired Wilcoxon" in text
    assert (tmp_path / "out" / "replay.png").stat().st_size > 10_000
    # --workers splits the replays over processes and changes nothing they print
    assert mod.main(["--table", str(folder), "--seeds", "3", "--workers", "2", "--out", str(tmp_path / "w2")]) == 0
    two = (tmp_path / "w2.txt").read_text()
    assert [x for x in two.splitlines() if "replayed in" not in x] == [x for x in text.splitlines() if "replayed in" not in x]
    # --stage-rate re-weights the model's stages (every stage once: 1,530 s measured; 335 s with mpnet at 4 texts/s, 400 + 800 becoming 2 x 2.5)
    assert mod.main(["--table", str(folder), "--seeds", "2", "--stage-rate", "all-mpnet-base-v2=4",
                     "--out", str(tmp_path / "gpu")]) == 0
    gpu = (tmp_path / "gpu.txt").read_text()
    assert "every stage once 1530s" in text and "every stage once 335s" in gpu
    assert "stage costs re-weighted: texts / rate for {'all-mpnet-base-v2': 4.0}" in gpu
    for bad, said in (("all-mpnet-base-v2", "expected MODEL=TEXTS_PER_S, got 'all-mpnet-base-v2'"),
                      ("bge-m3=9", "expected a model of this table's stages")):
        with pytest.raises(SystemExit, match=said):
            mod.main(["--table", str(folder), "--seeds", "1", "--stage-rate", bad, "--out", str(tmp_path / "x")])
