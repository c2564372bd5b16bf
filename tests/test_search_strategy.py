"""Issue 21: a repeat of a done config never consumes a trial of ``--trials``; a night whose space is exhausted stops
with one line. Real Optuna (SQLite), real MLflow (SQLite), real BM25 on a SciFact subset (a sparse-only space:
nothing is embedded, so these stay fast)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, run_cli

SPACE = str(REPO / "tests" / "data" / "space_exhaust.yaml")
DISTINCT = 4  # sparse.k1 x sparse.b; the embedding model changes nothing under retrieval.mode sparse


def _study(ws: Path, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{ws / 'optuna.db'}")


def _counted(study):
    from optuna.trial import TrialState

    return [t for t in study.trials if t.state == TrialState.COMPLETE and "evolve.repeat_of" not in t.user_attrs]


def _opts(ws, name: str, n_trials: int, seed: int = 0, **kw):
    from evolve.search_space import load_search_space
    from evolve.study import StudyOptions

    return StudyOptions(
        dataset_spec="scifact",
        space=load_search_space(SPACE),
        workspace=ws,
        study_name=name,
        subset=150,
        seed=seed,
        n_trials=n_trials,
        report_top=0,
        **kw,
    )


def test_the_effective_config_merges_what_retrieves_the_same():
    """Hand-derived: under sparse retrieval the model, index and fusion fields are unused; under dense, BM25's;
    an rrf fusion never reads the wsum weight; whole documents never read the chunk size."""
    from evolve.config import PipelineConfig, apply_overrides
    from evolve.search_space import load_search_space
    from evolve.study._strategy import effective_key, space_size, stage_keys

    base = PipelineConfig()

    def key(*sets):
        return effective_key(apply_overrides(base, list(sets)))

    assert key("retrieval.mode=sparse") == key("retrieval.mode=sparse", "embedding.model=all-mpnet-base-v2")
    assert key("retrieval.mode=sparse") != key("retrieval.mode=sparse", "sparse.k1=1.5")
    assert key("retrieval.mode=dense") == key("retrieval.mode=dense", "sparse.k1=1.5")
    assert key("retrieval.mode=dense") != key("retrieval.mode=dense", "embedding.model=all-mpnet-base-v2")
    assert key("retrieval.mode=hybrid", "fusion.method=rrf") == key(
        "retrieval.mode=hybrid", "fusion.method=rrf", "fusion.weight=0.3"
    )
    assert key("retrieval.mode=hybrid", "fusion.method=wsum") != key(
        "retrieval.mode=hybrid", "fusion.method=wsum", "fusion.weight=0.3"
    )
    assert key("chunking.size=128") == key("chunking.size=512")
    assert key("chunking.strategy=tokens", "chunking.size=128") != key("chunking.strategy=tokens", "chunking.size=512")
    assert stage_keys(apply_overrides(base, ["retrieval.mode=hybrid"])) == (
        "dense|sentence-transformers:all-MiniLM-L6-v2:256|none|-",
        "bm25|none|english",
    )
    rerank = ["retrieval.mode=sparse", "rerank.transport=bi-encoder", "rerank.model=all-mpnet-base-v2"]
    assert stage_keys(apply_overrides(base, rerank)) == ("bm25|none|english", "rerank|bi-encoder:all-mpnet-base-v2:512")
    # prefixes change the rerank's vectors, so they are another stage; depth and combine are not
    assert stage_keys(apply_overrides(base, [*rerank, "rerank.query_prefix=q: "]))[1] == (
        "rerank|bi-encoder:all-mpnet-base-v2:512|q: /"
    )
    assert stage_keys(apply_overrides(base, [*rerank, "rerank.depth=20", "rerank.combine=fuse"]))[1] == (
        "rerank|bi-encoder:all-mpnet-base-v2:512"
    )
    assert space_size(load_search_space(SPACE)) == DISTINCT
    # tests/data/space_small.yaml by hand: whole documents 2 index x 3 dims; tokens 2 aggregations x 2 x 3
    assert space_size(load_search_space(str(REPO / "tests" / "data" / "space_small.yaml"))) == 6 + 12
    assert space_size(load_search_space(str(REPO / "configs" / "search_space_demo.yaml"))) is None  # float ranges


def test_repeats_never_consume_trials_and_an_exhausted_space_stops(tmp_path):
    """Night 1 asks for 3 trials: 3 distinct configs are evaluated, however many of TPE's 8 parameter sets land on
    a done config (those are answered from the record and not counted). Night 2 asks for 20: only one config is
    left, so it evaluates 1 and stops with the one line, without asking 20 times. Night 3 runs nothing."""
    from evolve.study import run_study
    from evolve.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    first = run_study(_opts(ws, "x", 3, seed=1))
    study = _study(ws.path, "x")
    counted = _counted(study)
    assert len(counted) == 3 and first.stopped is None
    assert len({t.user_attrs["evolve.effective_key"] for t in counted}) == 3
    assert first.n_complete == 3 + first.n_repeats

    second = run_study(_opts(ws, "x", 20, seed=2))
    study = _study(ws.path, "x")
    assert len(_counted(study)) == DISTINCT
    assert second.stopped is not None and f"all {DISTINCT} distinct configs are done" in second.stopped
    assert "1 trial(s) counted" in second.stopped
    assert len(second.trial_numbers) < 20
    for t in study.trials:  # every repeat carries the value of the config it repeats
        if "evolve.repeat_of" in t.user_attrs:
            twin = study.trials[t.user_attrs["evolve.repeat_of"]]
            assert t.user_attrs["evolve.effective_key"] == twin.user_attrs["evolve.effective_key"]
            assert t.value == twin.value

    third = run_study(_opts(ws, "x", 5, seed=3))
    assert third.trial_numbers == [] and "exhausted" in third.stopped


def test_repeats_in_a_row_stop_a_night():
    """A bound on repeats in a row stops a night even where the space's size is not known to it."""
    from evolve.study._strategy import Budget

    budget = Budget(10, size=None, max_repeats=3)
    for repeat in (False, True, True):
        budget.record(repeat)
        assert not budget.should_stop(1)
    budget.record(True)
    assert budget.should_stop(1) and "the last 3 proposals repeated done configs" in budget.stopped


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "grid", "greedy", "cost"])
def test_each_strategy_drives_the_real_loop(tmp_path, strategy):
    """The replay's strategies are the loop's samplers (one code path): each runs a real night to exhaustion."""
    from evolve.study import run_study
    from evolve.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    summary = run_study(_opts(ws, "z", 10, seed=0, strategy=strategy))
    assert len(_counted(_study(ws.path, "z"))) == DISTINCT
    assert summary.stopped is not None


def test_cli_prints_the_one_line_and_refuses_an_unknown_strategy(tmp_path):
    ws = tmp_path / "ws"
    res = run_cli(
        "run",
        "--workspace",
        str(ws),
        "--study",
        "c",
        "--dataset",
        "scifact",
        "--subset",
        "150",
        "--search-space",
        SPACE,
        "--trials",
        "12",
        "--seed",
        "0",
        "--report-top",
        "0",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if "exhausted" in ln]
    assert len(lines) == 1 and f"all {DISTINCT} distinct configs are done" in lines[0], res.stdout
    assert f"{DISTINCT} trial(s) counted" in lines[0]
    bad = run_cli("run", "--workspace", str(ws), "--dataset", "scifact", "--trials", "1", "--strategy", "tpee")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "expected one of tpe, random, grid, greedy, cost, got 'tpee'" in bad.stderr
