"""The nightly loop end to end: real Optuna (SQLite), real MLflow (SQLite), real MiniLM, real faiss and ranx."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli

SPACE = str(REPO / "tests" / "data" / "space_small.yaml")
PROMOTE_SPACE = str(REPO / "tests" / "data" / "space_promote.yaml")
CHUNK_SPACE = str(REPO / "tests" / "data" / "space_chunks.yaml")
SUBSET = "150"


def _study(ws: Path, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{ws / 'optuna.db'}")


def _mlflow(ws: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")


def _runs(ws: Path, experiment: str):
    client = _mlflow(ws)
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def _run(ws: Path, *args, study="s", space=SPACE, subset=SUBSET, check=True, timeout=900):
    res = run_cli("run", "--workspace", str(ws), "--study", study, "--dataset", "scifact", "--subset", subset,
                  "--search-space", space, *args, timeout=timeout)
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """One real night of 3 trials, shared by the checks below."""
    ws = tmp_path_factory.mktemp("night") / "ws"
    res = _run(ws, "--trials", "3", "--seed", "3")
    return ws, res


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "text, expected",
    [
        ("params:\n  chunking.stratgy: {choices: [none]}\n", "unknown config field 'chunking.stratgy' in the search space (did you mean 'chunking.strategy'?)"),
        ("params:\n  index.type: {choices: [flat], whne: {}}\n", "unknown search-space key 'params.index.type.whne' (did you mean 'when'?)"),
        ("params:\n  sparse.k1: {float: [2.0, 0.5]}\n", "expected low <= high, got [2.0, 0.5]"),
        ("params:\n  index.type: {choices: [flat, lsh]}\n", "'index.type': value 'lsh' is invalid"),
        ("params:\n  index.hnsw_m: {int: [16, 64], when: {index.type: [hnsw]}}\n", "'when' names 'index.type', expected a field fixed or listed above it"),
        ("params: [\n", "expected valid YAML"),
    ],
)
def test_bad_search_space_is_one_line_exit_2(tmp_path, text, expected):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    res = run_cli("run", "--workspace", str(tmp_path / "ws"), "--dataset", "scifact", "--trials", "1",
                  "--search-space", str(space))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert expected in lines[0]
    assert "Traceback" not in res.stderr


def test_unknown_storage_url_is_one_line_exit_2(tmp_path):
    res = run_cli("run", "--workspace", str(tmp_path / "ws"), "--dataset", "scifact", "--trials", "1",
                  "--storage", "mongodb://127.0.0.1/x")
    assert res.returncode == 2
    assert res.stderr.strip() == ("error: expected an Optuna storage URL (sqlite:///PATH, postgresql+psycopg://USER@HOST/DB, "
                                  "mysql://…), got 'mongodb://127.0.0.1/x'")


def test_unwritable_workspace_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = run_cli("run", "--workspace", str(blocker / "ws"), "--dataset", "scifact", "--trials", "1")
    assert res.returncode == 2
    line = res.stderr.strip()
    assert line.startswith(f"error: workspace {blocker / 'ws'} is not writable: expected a writable folder, got ")
    assert "\n" not in line


def test_run_needs_a_budget(tmp_path):
    res = run_cli("run", "--workspace", str(tmp_path / "ws"), "--dataset", "scifact")
    assert res.returncode == 2
    assert res.stderr.strip() == "error: expected a budget: --trials N and/or --timeout SECONDS, got neither"


# ------------------------------------------------------------------------------------------ one night


def test_night_records_every_trial_in_optuna_and_mlflow(night):
    from optuna.trial import TrialState

    ws, res = night
    study = _study(ws, "s")
    trials = study.get_trials()
    assert len([t for t in trials if "evolve.repeat_of" not in t.user_attrs]) == 3  # repeats never count
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    client, runs = _runs(ws, "s")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert sorted(int(r.data.tags["optuna_trial_number"]) for r in children) == [t.number for t in trials]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    # provenance on the parent
    for tag in ("git_commit", "dataset_fingerprint", "search_space_hash", "qrels_fingerprint", "version.evolve",
                "version.optuna", "version.mlflow", "version.ranx"):
        assert parent.data.tags.get(tag), tag
    parent_files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"leaderboard.csv", "summary.md", "plots"} <= parent_files
    plots = {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots
    completed = [r for r in children if r.data.tags.get("evolve.state") == "COMPLETE"]
    assert completed
    child = completed[0]
    assert "chunking.strategy" in child.data.params and "embedding.model" in child.data.params
    for m in ("tune_ndcg_at_10", "tune_recall_at_100", "tune_mrr_at_10", "tune_map_at_100", "embed_seconds",
              "cache_hit_rate", "n_embedded", "retrieve_seconds", "latency_ms"):
        assert m in child.data.metrics, m
    files = {f.path for f in client.list_artifacts(child.info.run_id)}
    assert {"config.yaml", "per_query.tsv", "run.trec"} <= files
    assert "queries.tsv" not in files  # texts only with tracking.log_texts
    local = Path(client.download_artifacts(child.info.run_id, "per_query.tsv"))
    header, *rows = local.read_text().splitlines()
    assert header == "query_id\tndcg@10\trecall@100\tmrr@10\tmap@100"
    study_splits = study.user_attrs["evolve.splits"]
    assert sorted(r.split("\t")[0] for r in rows) == sorted(study_splits["tune"])
    out = res.stdout.splitlines()
    n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
    assert out[0].startswith(f"study s: 3 trial(s) this night: {n_complete} complete, {3 - n_complete} pruned "), out
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert f"best trial on the current corpus: #{best.number} = {best.value:.4f}" in out
    assert out[-1] == f"MLflow parent run {parent.info.run_id}; open it with: evolve dashboard --workspace {ws}"


def test_champion_is_the_first_trial_and_not_run_twice(night):
    ws, _ = night
    from evolve.search_space import load_search_space
    from evolve.study import champion_config
    from evolve.workspace import Workspace

    study = _study(ws, "s")
    space = load_search_space(SPACE)
    champ = space.params_of(champion_config(Workspace(ws), space))
    assert study.trials[0].params == champ
    assert study.trials[0].user_attrs.get("evolve.champion") is True
    # a second night on the same corpus does not enqueue it again
    _run(ws, "--trials", "1", "--seed", "4")
    again = _study(ws, "s").trials
    assert len(again) == 4
    assert not again[3].user_attrs.get("evolve.champion")


def test_holdout_and_report_queries_are_never_scored_during_tuning(night, scifact):
    """The cache holds a vector for every query that was ever scored: no holdout query is among them."""
    from evolve.cache import EmbeddingCache, cache_key
    from evolve.config import EmbeddingConfig
    from evolve.embedders import create_embedder

    ws, _ = night
    splits = _study(ws, "s").user_attrs["evolve.splits"]
    identity = create_embedder(EmbeddingConfig()).identity()
    cache = EmbeddingCache(ws / "cache" / "embeddings.sqlite")
    try:
        def cached(qids):
            keys = [cache_key(identity, "query", scifact.queries[q]) for q in qids]
            found, _ = cache.lookup(keys)
            return len(found)

        assert cached(splits["tune"]) == len(splits["tune"])
        assert cached(splits["holdout"]) == 0
    finally:
        cache.close()
    # report metrics exist only for the best trials, computed after tuning and sealed (not on any MLflow run)
    sealed = [k for k in _study(ws, "s").user_attrs if k.startswith("evolve.sealed_report.")]
    assert 1 <= len(sealed) <= 3
    client, runs = _runs(ws, "s")
    assert not [r for r in runs if "report_ndcg_at_10" in r.data.metrics]


def test_report_top_zero_never_touches_the_report_split(tmp_path, scifact):
    from evolve.cache import EmbeddingCache, cache_key
    from evolve.config import EmbeddingConfig
    from evolve.embedders import create_embedder

    ws = tmp_path / "ws"
    _run(ws, "--trials", "1", "--report-top", "0")
    splits = _study(ws, "s").user_attrs["evolve.splits"]
    assert splits["report_split"] == "test" and splits["source_split"] == "train"
    identity = create_embedder(EmbeddingConfig()).identity()
    cache = EmbeddingCache(ws / "cache" / "embeddings.sqlite")
    try:
        found, _ = cache.lookup([cache_key(identity, "query", scifact.queries[q]) for q in splits["report"]])
        assert found == {}
    finally:
        cache.close()


def test_repeated_parameters_return_the_recorded_value(night):
    ws, _ = night
    from optuna.trial import TrialState

    study = _study(ws, "s")
    done = [t for t in study.trials if t.state == TrialState.COMPLETE][0]
    before = len(study.trials)
    study.enqueue_trial(done.params)
    _run(ws, "--trials", "1")
    added = _study(ws, "s").trials[before:]
    last = added[0]
    assert len([t for t in added if "evolve.repeat_of" not in t.user_attrs]) == 1  # the repeat did not count
    assert last.params == done.params
    assert last.user_attrs["evolve.repeat_of"] == done.number
    assert last.value == done.value
    client, runs = _runs(ws, "s")
    rerun = [r for r in runs if r.data.tags.get("optuna_trial_number") == str(last.number)][0]
    assert rerun.data.tags["evolve.repeat_of_trial"] == str(done.number)


def test_changed_search_space_starts_a_new_study_unless_continue_stale(night, tmp_path):
    ws, _ = night
    space = tmp_path / "space.yaml"
    space.write_text(Path(SPACE).read_text() + "fixed:\n  retrieval.top_k: 150\n")
    res = _run(ws, "--trials", "1", "--report-top", "0", space=str(space))
    import optuna

    names = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{ws / 'optuna.db'}")}
    new = [n for n in names if n.startswith("s-")]
    assert len(new) == 1, names
    assert "made for another search space" in res.stderr
    before = len(_study(ws, "s").trials)
    _run(ws, "--trials", "1", "--report-top", "0", "--continue-stale", space=str(space))
    added = _study(ws, "s").trials[before:]
    assert len([t for t in added if "evolve.repeat_of" not in t.user_attrs]) == 1  # repeats never count
    # a space whose categorical choices changed cannot continue the old study: one line, exit 2
    narrowed = tmp_path / "narrowed.yaml"
    narrowed.write_text(Path(SPACE).read_text().replace("[null, 256, 128]", "[null, 256]"))
    res = _run(ws, "--trials", "1", "--continue-stale", space=str(narrowed), check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: --continue-stale: 'embedding.dim' changed its choices")


def test_failed_trials_are_recorded_and_an_all_failed_night_exits_nonzero(tmp_path):
    ws = tmp_path / "ws"
    space = tmp_path / "space.yaml"
    space.write_text("base: default\nfixed:\n  embedding.model: /nonexistent/model\nparams:\n  index.type: {choices: [flat, hnsw]}\n")
    res = _run(ws, "--trials", "2", space=str(space), check=False)
    assert res.returncode == 1, res.stderr
    from optuna.trial import TrialState

    trials = _study(ws, "s").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert "model '/nonexistent/model' not found" in trials[0].user_attrs["evolve.error"]
    _, runs = _runs(ws, "s")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {r.info.status for r in children} == {"FAILED"}
    assert all("not found" in r.data.tags["evolve.error"] for r in children)
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][0]
    assert parent.info.status == "FAILED"


def test_multi_objective_gives_a_pareto_front_and_promotion_needs_a_trial(tmp_path):
    ws = tmp_path / "ws"
    _run(ws, "--trials", "2", "--objectives", "ndcg@10,latency_ms", "--report-top", "0")
    study = _study(ws, "s")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.best_trials
    res = run_cli("promote-config", "--best", "--workspace", str(ws), "--study", "s")
    assert res.returncode == 2
    assert "expected --trial N, got --best" in res.stderr


# promotion: tests/test_promote.py


# ------------------------------------------------------------------------------------------ crash recovery


def _wait(pred, timeout=600, every=0.3):
    end = time.time() + timeout
    while time.time() < end:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def _states(ws: Path, name: str):
    import sqlite3

    db = ws / "optuna.db"
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(db, timeout=30)
        rows = con.execute("SELECT t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                           "WHERE s.study_name = ? ORDER BY t.number", (name,)).fetchall()
        con.close()
        return rows
    except sqlite3.Error:
        return []


def _running_with_mlflow_run(ws: Path, name: str) -> bool:
    """A RUNNING trial that already has its MLflow child run (so the kill hits both stores)."""
    import sqlite3

    try:
        con = sqlite3.connect(ws / "optuna.db", timeout=30)
        rows = con.execute(
            "SELECT COUNT(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
            "WHERE s.study_name = ? AND t.state = 'RUNNING' AND a.key = 'evolve.mlflow_run_id'", (name,)).fetchone()
        con.close()
        return rows[0] > 0
    except sqlite3.Error:
        return False


def _start_run(ws: Path, *args, study="crash"):
    exe = Path(sys.executable).with_name("evolve")
    cmd = [str(exe), "run", "--workspace", str(ws), "--study", study, "--dataset", "scifact", "--subset", SUBSET,
           "--search-space", CHUNK_SPACE, "--heartbeat-interval", "1", "--grace-period", "4", "--no-prune",
           "--report-top", "0", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.slow
def test_sigkill_mid_trial_loses_nothing_completed_and_recovers(tmp_path):
    ws = tmp_path / "ws"
    proc = _start_run(ws, "--trials", "3", "--seed", "1")
    # wait for one completed trial and a second one in flight, then kill the whole process group
    _wait(lambda: [s for _, s in _states(ws, "crash")].count("COMPLETE") >= 1 and _running_with_mlflow_run(ws, "crash"))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = dict(_states(ws, "crash"))
    running = [n for n, s in before.items() if s == "RUNNING"]
    assert len(running) == 1
    time.sleep(5)  # > grace period
    res = _run(ws, "--trials", "1", "--heartbeat-interval", "1", "--grace-period", "4", "--no-prune",
               "--report-top", "0", study="crash", space=CHUNK_SPACE)
    after = dict(_states(ws, "crash"))
    assert after[running[0]] == "FAIL"
    for n, s in before.items():
        if s == "COMPLETE":
            assert after[n] == "COMPLETE"
    # --trials 1 buys one new trial; a repeat of a done config (answered from its result) is free and may add more
    new = [t for t in _study(ws, "crash").trials if t.number not in before]
    counted = [t.number for t in new if "evolve.repeat_of" not in t.user_attrs]
    assert len(counted) == 1 and after[counted[0]] == "COMPLETE", [(t.number, t.state, t.user_attrs) for t in new]
    assert all(after[t.number] == "COMPLETE" for t in new), [(t.number, t.state) for t in new]
    by_number = {t.number: t for t in _study(ws, "crash").trials}
    for t in new:  # a free repeat answers from a complete trial of the same params, never from the killed one
        if "evolve.repeat_of" in t.user_attrs:
            twin = by_number[int(t.user_attrs["evolve.repeat_of"])]
            assert twin.state.name == "COMPLETE" and twin.params == t.params, (t.number, twin.number)
    _, runs = _runs(ws, "crash")
    assert not [r for r in runs if r.info.status == "RUNNING"], [(r.info.run_name, r.info.status) for r in runs]
    killed = [r for r in runs if r.data.tags.get("optuna_trial_number") == str(running[0])]
    assert [r.info.status for r in killed] == ["FAILED"]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.info.status for r in parents) == ["FINISHED", "KILLED"]
    assert res.returncode == 0


@pytest.mark.slow
def test_a_trial_owned_by_a_live_process_is_untouched(tmp_path):
    from evolve.storage import open_storage
    from evolve.tracking import Tracker

    ws = tmp_path / "ws"
    proc = _start_run(ws, "--trials", "1", study="live")
    _wait(lambda: _running_with_mlflow_run(ws, "live"))
    time.sleep(6)  # longer than the grace period: only the heartbeat says the owner is alive
    import optuna

    storage = open_storage(f"sqlite:///{ws / 'optuna.db'}", heartbeat_interval=1, grace_period=4)
    study = optuna.load_study(study_name="live", storage=storage)
    optuna.storages.fail_stale_trials(study)
    assert [s for _, s in _states(ws, "live")] == ["RUNNING"]
    tracker = Tracker(f"sqlite:///{ws / 'mlflow.db'}", "live")
    assert tracker.fail_stale_runs(4) == []
    tracker.close()
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-2000:]
    assert [s for _, s in _states(ws, "live")] == ["COMPLETE"]
    _, runs = _runs(ws, "live")
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_status_shows_leaderboard_champion_and_counts(night):
    ws, _ = night
    res = run_cli("status", "--workspace", str(ws), "--study", "s")
    assert res.returncode == 0, res.stderr
    assert "study s: top 10 on the current corpus" in res.stdout
    assert "trials by state: COMPLETE" in res.stdout
    assert "champion: configs/default.yaml (shipped default)" in res.stdout
    data = json.loads(run_cli("status", "--workspace", str(ws), "--study", "s", "--json").stdout.splitlines()[-1])
    assert data["study"] == "s" and data["counts"].get("COMPLETE", 0) >= 1
    assert data["mlflow_trial_runs"].get("RUNNING", 0) == 0


def test_search_prints_the_champion_pipelines_top_documents(night, scifact):
    ws, _ = night
    res = run_cli("search", "0-dimensional biomaterials lack inductive properties", "--k", "3", "--json",
                  "--workspace", str(ws), "--study", "s")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout.splitlines()[-1])
    assert len(data["results"]) == 3
    assert all(r["id"] in scifact.corpus for r in data["results"])
    assert data["results"][0]["score"] >= data["results"][-1]["score"]


# ------------------------------------------------------------------------------------------ in-process nights
# Real run_study calls (real Optuna/MLflow on SQLite, MiniLM, faiss, bm25s) in this process: no CLI start-up per
# night. They share one workspace, so the 150-document subset is embedded once for all of them.


@pytest.fixture(scope="module")
def inproc_ws(tmp_path_factory):
    from evolve.workspace import Workspace

    return Workspace(tmp_path_factory.mktemp("inproc") / "ws").ensure()


def _opts(ws, name: str, space, dataset: str = "scifact", subset: int | None = int(SUBSET), **kw):
    from evolve.search_space import load_search_space
    from evolve.study import StudyOptions

    kw.setdefault("report_top", 0)
    return StudyOptions(dataset_spec=dataset, space=load_search_space(space), workspace=ws, study_name=name,
                        subset=subset, seed=0, **kw)


def _night(opts, enqueue=(), n_trials=None):
    """Enqueue ``enqueue`` (param dicts) in the study, then run one night of that many counted trials (repeats
    never count: pass ``n_trials`` where ``enqueue`` holds one)."""
    from evolve.study import load_study_dataset, prepare_study, run_study

    storage, study, _ = prepare_study(opts, load_study_dataset(opts))
    for params in enqueue:
        study.enqueue_trial(params)
    storage.engine.dispose()
    opts.n_trials = len(enqueue) if n_trials is None else n_trials
    return run_study(opts)


def _write_beir(folder: Path, ds) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n"
                                                 for d in ds.corpus.values()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in ds.queries.items()))
    for split, qrels in ds.qrels.items():
        rows = [f"{q}\t{d}\t{r}" for q, docs in qrels.items() for d, r in docs.items()]
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")


def _add(study, value: float, values: list[float] | None, corpus: str):
    import optuna

    study.add_trial(optuna.trial.create_trial(
        value=value, intermediate_values=dict(enumerate(values)) if values else None,
        user_attrs={"evolve.corpus_fingerprint": corpus}))


def test_pruner_compares_with_the_best_trial_on_this_corpus_that_has_per_query_values():
    """The study's pruner on a real (in-memory) Optuna study: a better trial on another corpus is not the
    reference, and a best trial without per-query values (a repeat, an older --no-prune trial) does not switch
    pruning off."""
    import optuna

    from evolve.study._sampling import make_pruner

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = make_pruner(_opts(None, "x", SPACE, prune_batch=10))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    rng = np.random.default_rng(0)
    good = list(rng.uniform(0.6, 1.0, 40))
    _add(study, 0.95, [v + 0.2 for v in good], "old-corpus")  # the study-wide best, scored on another corpus
    running = study.ask()
    running.set_user_attr("evolve.corpus_fingerprint", "new")
    for i, v in enumerate(good):
        running.report(v - 0.3, i)
    assert not running.should_prune(), "pruned against a trial of another corpus"
    _add(study, 0.8, good, "new")  # on this corpus, with per-query values
    _add(study, 0.9, None, "new")  # better, but no per-query values (optuna's pruner gives up on it)
    assert running.should_prune()
    study.tell(running, state=optuna.trial.TrialState.PRUNED)
    near = study.ask()
    near.set_user_attr("evolve.corpus_fingerprint", "new")
    for i, v in enumerate(good):
        near.report(v + (0.05 if i % 2 else -0.04), i)
    assert not near.should_prune()  # as good as the reference: kept


def test_pruning_after_a_corpus_change_and_repeats_carry_per_query_values(inproc_ws, scifact, tmp_path):
    """Night 1 prunes a weak config against a strong one. Then one document changes (same queries, same study):
    the first trial on the new corpus has nothing comparable and completes; pruning resumes against the best
    trial on the new corpus; a repeat carries its twin's per-query values."""
    from optuna.trial import TrialState

    folder = tmp_path / "data"
    ds = scifact.subset(int(SUBSET))
    _write_beir(folder, ds)
    opts = _opts(inproc_ws, "corpus", PROMOTE_SPACE, dataset=str(folder), subset=None, prune_batch=10)
    strong, weak, weak2, strong2 = ({"embedding.dim": d, "index.type": i}
                                    for d, i in ((384, "flat"), (16, "flat"), (16, "hnsw"), (384, "hnsw")))
    _night(opts, [strong, weak])
    study = _study(inproc_ws.path, "corpus")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    lines = (folder / "corpus.jsonl").read_text().splitlines()
    doc = json.loads(lines[-1])
    doc["text"] += " Revised."
    (folder / "corpus.jsonl").write_text("\n".join(lines[:-1] + [json.dumps(doc)]) + "\n")
    _night(opts, [weak2, strong2, strong2, weak], n_trials=3)  # the repeat is free: 3 counted trials
    study = _study(inproc_ws.path, "corpus")
    assert len(study.trials) == 6, "the changed corpus must continue the same study"
    states = [t.state for t in study.trials[2:]]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED], states
    first, best, repeat, _ = study.trials[2:]
    assert first.user_attrs["evolve.corpus_fingerprint"] != study.trials[0].user_attrs["evolve.corpus_fingerprint"]
    assert repeat.user_attrs["evolve.repeat_of"] == best.number
    assert repeat.intermediate_values == best.intermediate_values and len(best.intermediate_values) > 20


def test_no_holdout_or_report_query_is_scored_during_tuning_dense_and_sparse(inproc_ws, scifact, tmp_path, monkeypatch):
    """Witnesses at the two places a query meets the index: every query text embedded (dense) and every query
    text BM25 scores (sparse), recorded while a trial's objective runs. Neither ever sees a holdout or report
    query; after tuning, the report split is scored (sealed) and the witness sees that too, so it is not blind."""
    from evolve.cache import EmbeddingCache
    from evolve.sparse import BM25Index
    from evolve.study import Objective

    seen = {"tuning": {"dense": set(), "sparse": set()}, "after": {"dense": set(), "sparse": set()}}
    phase = ["after"]
    real_call, real_embed, real_search = Objective.__call__, EmbeddingCache.embed, BM25Index.search

    def call(self, trial):
        phase[0] = "tuning"
        try:
            return real_call(self, trial)
        finally:
            phase[0] = "after"

    def embed(self, embedder, texts, kind, **kw):
        if kind == "query":
            seen[phase[0]]["dense"].update(texts)
        return real_embed(self, embedder, texts, kind, **kw)

    def search(self, query_texts, k):
        seen[phase[0]]["sparse"].update(query_texts)
        return real_search(self, query_texts, k)

    monkeypatch.setattr(Objective, "__call__", call)
    monkeypatch.setattr(EmbeddingCache, "embed", embed)
    monkeypatch.setattr(BM25Index, "search", search)
    space = tmp_path / "modes.yaml"
    space.write_text("base: default\nparams:\n  retrieval.mode: {choices: [dense, sparse]}\n")
    opts = _opts(inproc_ws, "leak", str(space), report_top=2)
    summary = _night(opts, [{"retrieval.mode": "dense"}, {"retrieval.mode": "sparse"}])
    assert summary.n_complete == 2 and len(summary.sealed_report) == 2
    splits = _study(inproc_ws.path, "leak").user_attrs["evolve.splits"]
    text = {role: {scifact.queries[q] for q in splits[role]} for role in ("tune", "holdout", "report")}
    for mode in ("dense", "sparse"):
        tuned = seen["tuning"][mode]
        assert tuned == text["tune"], f"{mode}: tuning scored other queries than the tune split"
        assert not tuned & (text["holdout"] - text["tune"]), f"{mode}: a holdout query was scored during tuning"
        assert not tuned & (text["report"] - text["tune"]), f"{mode}: a report query was scored during tuning"
        assert text["report"] <= seen["after"][mode], f"{mode}: the witness did not see the report split after tuning"
        assert not seen["after"][mode] & (text["holdout"] - text["report"])


def test_fusion_optimize_tunes_the_fusion_on_tune_queries_and_the_trial_keeps_it(inproc_ws, scifact, tmp_path):
    """`fusion.optimize: true` in hybrid mode: rrf_k starts off ranx's grid (7), so tuning must move it; the
    trial's config (what promotion takes), its MLflow params and its score are the tuned ones."""
    from mlflow.tracking import MlflowClient

    from evolve.cache import EmbeddingCache
    from evolve.config import PipelineConfig
    from evolve.evaluate import evaluate_run
    from evolve.pipeline import Pipeline
    from evolve.search_space import load_search_space
    from evolve.splits import QuerySplits
    from evolve.study import optimize_fusion

    space = tmp_path / "hybrid.yaml"
    space.write_text("base: default\nfixed:\n  retrieval.mode: hybrid\n  fusion.method: rrf\n  fusion.rrf_k: 7\n"
                     "  fusion.optimize: true\nparams:\n  index.type: {choices: [flat]}\n")
    opts = _opts(inproc_ws, "fusion", str(space))
    _night(opts, [{"index.type": "flat"}])
    trial = _study(inproc_ws.path, "fusion").trials[0]
    tuned = PipelineConfig.model_validate(trial.user_attrs["evolve.config"])
    untuned = load_search_space(str(space)).config_for({"index.type": "flat"})
    assert untuned.fusion.rrf_k == 7 and tuned.fusion.rrf_k != 7 and tuned.fusion.optimize
    # the same tuning, done here on the tune queries, gives the same k
    ds = scifact.subset(int(SUBSET))
    splits = QuerySplits.from_dict(_study(inproc_ws.path, "fusion").user_attrs["evolve.splits"])
    tune = splits.qrels(ds, "tune")
    cache = EmbeddingCache(inproc_ws.cache_path)
    try:
        pipe = Pipeline(untuned, ds, cache=cache, seed=splits.seed)
        qids = sorted(tune)
        pipe.embed_queries(qids)
        pipe.prepare()
        assert optimize_fusion(tune, pipe.dense_run(qids), pipe.sparse_run(qids), untuned.fusion).rrf_k == tuned.fusion.rrf_k
        scores = {}
        for cfg in (tuned, untuned):
            pipe.config = cfg
            scores[cfg.fusion.rrf_k] = evaluate_run(tune, pipe.retrieve(qids), ["ndcg@10"])[0]["ndcg@10"]
    finally:
        cache.close()
    assert scores[tuned.fusion.rrf_k] != scores[7]
    assert trial.value == pytest.approx(scores[tuned.fusion.rrf_k])  # scored with the tuned fusion
    run = MlflowClient(tracking_uri=inproc_ws.default_tracking_uri).get_run(trial.user_attrs["evolve.mlflow_run_id"])
    assert run.data.params["fusion.rrf_k"] == run.data.params["tuned.fusion.rrf_k"] == str(tuned.fusion.rrf_k)


def test_run_workers_enqueues_the_champion_first_and_seals_report_top(tmp_path):
    """`evolve run --workers` used to skip the champion and ignore --report-top: the champion is trial 0, and the
    best trial's report metrics are sealed after the workers finish (not shown)."""
    from evolve.search_space import load_search_space
    from evolve.study import champion_config
    from evolve.workspace import Workspace

    ws = tmp_path / "ws"
    res = _run(ws, "--workers", "1", "--trials", "1", "--report-top", "1", "--no-prune",
               "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", study="w")
    assert "1 worker(s) finished with exit codes [0]" in res.stdout
    assert "report (test) metrics of 1 best trial(s) computed and sealed: shown only once a trial is promoted" in res.stdout
    study = _study(ws, "w")
    space = load_search_space(SPACE)
    assert study.trials[0].params == space.params_of(champion_config(Workspace(ws), space))
    assert study.trials[0].user_attrs.get("evolve.champion") is True
    sealed = study.user_attrs.get("evolve.sealed_report.0")
    assert sealed and set(sealed) >= {"ndcg@10", "recall@100"}
    assert "ndcg@10 " not in res.stdout  # sealed: no report number printed
