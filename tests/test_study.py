"""The nightly loop end to end: real Optuna (SQLite), real MLflow (SQLite), real MiniLM, real faiss and ranx."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
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
    assert len(trials) == 3
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
    assert "night" in res.stdout and "best trial on the current corpus" in res.stdout or "study s:" in res.stdout


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
    # report metrics exist only for the best trials, computed after tuning
    client, runs = _runs(ws, "s")
    with_report = [r for r in runs if "report_ndcg_at_10" in r.data.metrics]
    assert 1 <= len(with_report) <= 3


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
    study.enqueue_trial(done.params)
    _run(ws, "--trials", "1")
    last = _study(ws, "s").trials[-1]
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
    assert len(_study(ws, "s").trials) == before + 1
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


# ------------------------------------------------------------------------------------------ promotion


@pytest.fixture(scope="module")
def promo(tmp_path_factory):
    """A weak champion (16-d vectors) and a study holding both weak and strong configs."""
    from evolve.config import apply_overrides, config_to_yaml, load_config

    ws = tmp_path_factory.mktemp("promo") / "ws"
    ws.mkdir(parents=True)
    weak = apply_overrides(load_config(), ["embedding.dim=16"])
    (ws / "champion.yaml").write_text(config_to_yaml(weak))
    args = ("--no-prune", "--report-top", "0")
    _run(ws, "--trials", "1", *args, space=PROMOTE_SPACE, subset="300")  # the champion, (16, flat)
    study = _study(ws, "s")
    for dim, index in ((16, "hnsw"), (384, "flat"), (384, "hnsw")):
        study.enqueue_trial({"embedding.dim": dim, "index.type": index})
    _run(ws, "--trials", "3", *args, space=PROMOTE_SPACE, subset="300")
    study = _study(ws, "s")
    by = {(t.params["embedding.dim"], t.params["index.type"]): t.number for t in study.trials}
    return ws, by, weak


def test_promotion_refuses_a_candidate_that_is_not_significantly_better(promo):
    ws, by, weak = promo
    assert (16, "hnsw") in by, by
    before = (ws / "champion.yaml").read_text()
    res = run_cli("promote-config", "--trial", str(by[(16, "hnsw")]), "--workspace", str(ws), "--study", "s")
    assert res.returncode == 0, res.stderr
    assert "verdict: KEEP the champion" in res.stdout
    assert "p-value" in res.stdout and "win" in res.stdout
    assert (ws / "champion.yaml").read_text() == before
    assert not (ws / "history").exists()
    same = run_cli("promote-config", "--trial", str(by[(16, "flat")]), "--workspace", str(ws), "--study", "s")
    assert "the best trial is the current champion itself" in same.stdout


def test_promotion_accepts_a_significantly_better_candidate_and_rollback_restores(promo):
    from evolve.config import load_config

    ws, by, weak = promo
    strong = by.get((384, "flat"), by.get((384, "hnsw")))
    assert strong is not None, by
    dry = run_cli("promote-config", "--trial", str(strong), "--dry-run", "--workspace", str(ws), "--study", "s")
    assert "verdict: PROMOTE" in dry.stdout and "dry run: nothing written" in dry.stdout
    assert not (ws / "history").exists()
    export = ws.parent / "deploy" / "champion.yaml"
    res = run_cli("promote-config", "--trial", str(strong), "--export", str(export), "--workspace", str(ws), "--study", "s")
    assert res.returncode == 0, res.stderr
    assert "verdict: PROMOTE: significantly better" in res.stdout
    champ = load_config(ws / "champion.yaml")
    study = _study(ws, "s")
    assert champ.to_dict() == study.trials[strong].user_attrs["evolve.config"]
    assert load_config(export).to_dict() == champ.to_dict()
    records = sorted((ws / "history").glob("*.yaml"))
    assert len(records) == 1
    rec = yaml.safe_load(records[0].read_text())
    assert rec["kind"] == "promotion" and rec["trial"] == strong and rec["forced"] is False
    assert rec["verdict"]["p_value"] <= 0.05 and rec["verdict"]["delta"] > 0
    assert rec["previous_champion"] == weak.to_dict()
    assert rec["mlflow_run_id"] == study.trials[strong].user_attrs["evolve.mlflow_run_id"]
    assert rec["earlier_promotions_on_this_holdout"] == 0
    client = _mlflow(ws)
    assert client.get_run(rec["mlflow_run_id"]).data.tags["evolve.champion"] == "true"
    assert client.get_model_version_by_alias("s-pipeline", "champion").run_id == rec["mlflow_run_id"]
    # rollback restores the weak champion and says so in the history
    rb = run_cli("rollback", "--workspace", str(ws), "--study", "s")
    assert rb.returncode == 0, rb.stderr
    assert load_config(ws / "champion.yaml").to_dict() == weak.to_dict()
    assert len(list((ws / "history").glob("*-rollback.yaml"))) == 1


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
    assert list(after.values()).count("COMPLETE") == list(before.values()).count("COMPLETE") + 1
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
