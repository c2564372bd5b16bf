"""The promotion gate: the one-sided paired permutation test, the holdout-look log and its level rule, the
study's own objective, report metrics sealed until promotion. Real Optuna, MLflow, MiniLM, faiss, ranx, scipy."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, expect_one_line, run_cli

PROMOTE_SPACE = str(REPO / "tests" / "data" / "space_promote.yaml")
SUBSET = "150"
OBJECTIVE = "mrr@10"  # not nDCG@10: promotion must test the study's own objective


# ------------------------------------------------------------------------------------------ the paired test


def test_paired_test_exact_known_answer():
    """10 queries: scipy enumerates all 2**10 sign assignments. b, counted here by hand over the 1023 that differ
    from the observed one, gives p = (b + 1) / (n + 1) with n = 1023."""
    from evolve.evaluate import paired_permutation_test

    diffs = np.array([0.30, 0.10, -0.05, 0.20, 0.00, 0.15, -0.10, 0.25, 0.05, 0.12])
    champion = {f"q{i}": 0.5 for i in range(10)}
    candidate = {f"q{i}": 0.5 + d for i, d in enumerate(diffs)}
    observed = diffs.mean()
    b = sum(1 for signs in itertools.product((1, -1), repeat=10)
            if signs != (1,) * 10 and (np.array(signs) * diffs).mean() >= observed - 1e-12)
    res = paired_permutation_test(candidate, champion, n_permutations=10000, seed=3)
    assert res.exact and res.n_permutations == 1023 and res.b == b
    assert res.p_value == pytest.approx((b + 1) / 1024)
    assert (res.win, res.tie, res.loss, res.n_queries) == (7, 1, 2, 10)


def test_paired_test_random_sign_flips_never_p_zero_and_one_sided():
    from scipy.stats import wilcoxon

    from evolve.evaluate import paired_permutation_test

    rng = np.random.default_rng(0)
    base = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0.2, 0.8, 60))}
    better = {q: v + 0.2 for q, v in base.items()}  # better on every query: no sign flip reaches the observed mean
    res = paired_permutation_test(better, base, n_permutations=999, seed=5)
    assert not res.exact and res.n_permutations == 999 and res.seed == 5
    assert res.b == 0 and res.p_value == 1 / 1000  # (b + 1) / (n + 1), never 0
    # a significantly WORSE candidate: one-sided, so p is near 1 (a two-sided test would call it significant)
    worse = {q: v - 0.05 + float(rng.normal(0, 0.02)) for q, v in base.items()}
    res = paired_permutation_test(worse, base, n_permutations=999, seed=5)
    assert res.p_value > 0.99 and res.p_value == (res.b + 1) / 1000
    assert wilcoxon([worse[q] - base[q] for q in base]).pvalue < 0.001  # two-sided: "significant"
    # same seed, same answer
    assert paired_permutation_test(worse, base, n_permutations=999, seed=5) == res


def test_paired_test_needs_the_same_queries():
    from evolve.evaluate import paired_permutation_test

    with pytest.raises(ValueError, match="same queries"):
        paired_permutation_test({"a": 1.0}, {"b": 1.0})


# ------------------------------------------------------------------------------------------ the look log


def test_the_look_log_names_the_rule_and_each_look(tmp_path):
    """The rule itself is tested by hand in tests/test_gate_rule.py; here: what one record and the verdict say."""
    from evolve.looks import HoldoutLooks
    from evolve.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    looks = HoldoutLooks(ws)
    first = looks.budget("fp-a", alpha=None)
    assert (first.alpha, first.look, first.carried) == (0.05, 1, 0.0) and first.level == pytest.approx(0.05 / 102)
    assert first.rule_text() == ("alpha-spending with online fallback (Tian & Ramdas 2021), look 1, level "
                                 "0.05 x 0.0098 = 0.00049")
    looks.record(first, trial=1, dry_run=True, p_value=0.0001)
    again = looks.budget("fp-b", alpha=None)
    assert again.rule_text() == ("alpha-spending with online fallback (Tian & Ramdas 2021), look 2, level "
                                 "0.05 x 0.00961 + 0.00049 handed on by look 1 = 0.000971")
    looks.record(again, trial=2, dry_run=False, p_value=0.5)
    lines = [json.loads(x) for x in ws.holdout_looks_path.read_text().splitlines()]
    assert [x["look"] for x in lines] == [1, 2] and [x["rejected"] for x in lines] == [True, False]
    assert all(x["rule"] == "fallback-spending" and x["horizon"] == 100 for x in lines)
    assert [x["holdout_fingerprint"] for x in lines] == ["fp-a", "fp-b"]


def test_look_log_cut_write_and_malformed_line(tmp_path):
    from evolve.errors import EvolveError
    from evolve.looks import HoldoutLooks
    from evolve.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    looks = HoldoutLooks(ws)
    looks.record(looks.budget("fp", alpha=None), trial=0)
    with open(ws.holdout_looks_path, "a") as fh:
        fh.write('{"look": 2, "holdout_fing')  # a process killed mid-write
    assert len(looks.records()) == 1
    looks.record(looks.budget("fp", alpha=None), trial=1)  # starts on a line of its own
    assert [r["trial"] for r in looks.records()] == [0, 1]
    ws.holdout_looks_path.write_text('{"look": 1, "holdout_fingerprint": "fp"}\nnot json\n{"look": 2, "holdout_fingerprint": "fp"}\n')
    expect_one_line(looks.records, f"{ws.holdout_looks_path}:2: expected one JSON object a line", exc=EvolveError)


# ------------------------------------------------------------------------------------------ the CLI gate


def _study(ws: Path, name: str = "s"):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{ws / 'optuna.db'}")


def _looks(ws: Path) -> list[dict]:
    path = ws / "holdout_looks.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _promote(ws: Path, *args: str):
    return run_cli("promote-config", "--workspace", str(ws), *args)


@pytest.fixture(scope="module")
def promo(tmp_path_factory):
    """A weak champion (16-d vectors) and a study on mrr@10 holding weak and strong configs; the two best
    trials' report metrics sealed after the night. Returns (workspace, trial number by params, weak, night)."""
    from evolve.cli._common import study_options
    from evolve.config import apply_overrides, config_to_yaml, load_config
    from evolve.study import load_study_dataset, prepare_study

    root = tmp_path_factory.mktemp("promo")
    ws = root / "ws"
    ws.mkdir()
    weak = apply_overrides(load_config(), ["embedding.dim=16"])
    (ws / "champion.yaml").write_text(config_to_yaml(weak))
    opts = study_options(dataset_spec="scifact", n_trials=None, timeout=None, seed=None, search_space=PROMOTE_SPACE,
                         overrides=None, objectives=OBJECTIVE, split_seed=0, prune=False, subset=int(SUBSET),
                         workspace=str(ws), study_name="s", storage_url=None, tracking_uri=None)
    storage, study, _ = prepare_study(opts, load_study_dataset(opts))
    for dim, index in ((16, "hnsw"), (384, "flat"), (384, "hnsw")):
        study.enqueue_trial({"embedding.dim": dim, "index.type": index})
    storage.engine.dispose()
    night = run_cli("run", "--workspace", str(ws), "--dataset", "scifact", "--subset", SUBSET, "--search-space",
                    PROMOTE_SPACE, "--objectives", OBJECTIVE, "--trials", "4", "--no-prune", "--report-top", "2")
    assert night.returncode == 0, night.stderr[-3000:]
    shutil.copytree(ws, root / "pristine")  # for the budget test: no look taken yet
    study = _study(ws)
    by = {(t.params["embedding.dim"], t.params["index.type"]): t.number for t in study.trials}
    assert len(by) == 4, by
    return ws, by, weak, night


def test_report_metrics_are_sealed_until_promotion(promo):
    """After the night: no report (test) number in its output, its summary, leaderboard or `status`, and none on
    any MLflow trial run; the two best trials' metrics are sealed in the study."""
    from mlflow.tracking import MlflowClient

    ws, by, weak, night = promo
    assert "report (test) metrics of 2 best trial(s) computed and sealed: shown only once a trial is promoted" in night.stdout
    assert "report (test) of" not in night.stdout and "report_" not in night.stdout
    study = _study(ws)
    sealed = {k: v for k, v in study.user_attrs.items() if k.startswith("evolve.sealed_report.")}
    assert len(sealed) == 2 and all(set(v) >= {"ndcg@10", OBJECTIVE} for v in sealed.values())
    status = run_cli("status", "--workspace", str(ws))
    assert status.returncode == 0, status.stderr
    assert "report" not in status.stdout.lower()
    data = json.loads(run_cli("status", "--workspace", str(ws), "--json").stdout.splitlines()[-1])
    assert not [c for c in data["leaderboard"][0] if "report" in c]
    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    exp = client.get_experiment_by_name("s")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert runs and not [r for r in runs if any(m.startswith("report_") for m in r.data.metrics)]
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][0]
    summary = Path(client.download_artifacts(parent.info.run_id, "summary.md")).read_text()
    board = Path(client.download_artifacts(parent.info.run_id, "leaderboard.csv")).read_text()
    assert "report" not in summary.lower().replace("report (test) metrics of 2 best trial(s) computed and sealed", "")
    assert "report" not in board
    # trial numbers print as integers, missing values as empty cells (not 0.0000 and nan)
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| trial")]
    assert rows and all(line.split(" | ")[0].lstrip("| ").isdigit() for line in rows), rows
    assert "nan" not in summary and "| 0.0000 |" not in summary


def test_no_prune_trials_still_record_per_query_values(promo):
    """--no-prune trials used to complete without intermediate values: one of them as the best switched optuna's
    pruner off for the whole study. Now every single-objective trial reports one value per tune query."""
    ws, _, _, _ = promo
    study = _study(ws)
    n_tune = len(study.user_attrs["evolve.splits"]["tune"])
    assert [len(t.intermediate_values) for t in study.trials] == [n_tune] * len(study.trials)


def test_refuses_a_candidate_that_is_not_significantly_better_and_counts_the_look(promo):
    from evolve.looks import permutations_for, replay

    ws, by, weak, _ = promo
    before = (ws / "champion.yaml").read_text()
    n_looks = len(_looks(ws))
    n_holdout = len(_study(ws).user_attrs["evolve.splits"]["holdout"])
    res = _promote(ws, "--trial", str(by[(16, "hnsw")]))
    assert res.returncode == 0, res.stderr
    assert f"holdout verdict ({n_holdout} queries, {OBJECTIVE}, one-sided paired permutation test)" in res.stdout
    verdict = [x for x in res.stdout.splitlines() if x.startswith("verdict: ")]
    assert len(verdict) == 1 and verdict[0].startswith(f"verdict: KEEP the champion: not significantly better on holdout {OBJECTIVE}: ")
    state = replay(_looks(ws)[:-1], 0.05)  # the look just taken (the rule's values are by hand in test_gate_rule)
    assert state.look == n_looks + 1
    assert verdict[0].endswith(f"(one-sided paired sign-flip permutation test on {OBJECTIVE}, n = "
                               f"{permutations_for(state.level)} random sign assignments, seed 0; {state.rule_text()})")
    assert "p = 0.0000" not in res.stdout and "p = 0 " not in res.stdout
    assert (ws / "champion.yaml").read_text() == before
    assert not (ws / "history").exists()
    looks = _looks(ws)
    assert len(looks) == n_looks + 1  # a refused look counts
    last = looks[-1]
    assert (last["trial"], last["decision"], last["dry_run"], last["promoted"]) == (by[(16, "hnsw")], "KEEP the champion", False, False)
    assert last["metric"] == OBJECTIVE and last["rule"] == "fallback-spending" and "budget" not in last
    assert last["level"] == state.level and last["rejected"] is False
    assert last["p_value"] == (last["b"] + 1) / (last["n_permutations"] + 1)
    same = _promote(ws, "--trial", str(by[(16, "flat")]))
    assert same.returncode == 0, same.stderr
    assert f"verdict: trial {by[(16, 'flat')]} is the current champion itself; nothing to promote (no holdout look taken)" in same.stdout
    assert len(_looks(ws)) == n_looks + 1


def test_promotes_a_significantly_better_candidate_reveals_its_report_and_rollback_restores(promo):
    """(p itself is checked against an independent enumeration in test_paired_test_exact_known_answer.)"""
    from mlflow.tracking import MlflowClient

    from evolve.config import load_config

    ws, by, weak, _ = promo
    strong = by[(384, "flat")]
    n_looks = len(_looks(ws))
    dry = _promote(ws, "--trial", str(strong), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "verdict: PROMOTE: significantly better" in dry.stdout
    assert f"dry run: nothing written (look {n_looks + 1} of the workspace's looks recorded in holdout_looks.jsonl)" in dry.stdout
    dry_look = _looks(ws)[-1]
    assert dry_look["rejected"] is True  # a dry run's rejection hands its level on to the next look
    assert not (ws / "history").exists()
    assert _looks(ws)[-1]["dry_run"] is True and _looks(ws)[-1]["promoted"] is False
    export = ws.parent / "deploy" / "champion.yaml"
    res = _promote(ws, "--trial", str(strong), "--export", str(export))
    assert res.returncode == 0, res.stderr
    assert "verdict: PROMOTE: significantly better" in res.stdout
    assert f"look {n_looks + 2}, level 0.05 x " in res.stdout and f"handed on by look {n_looks + 1}" in res.stdout
    study = _study(ws)
    champ = load_config(ws / "champion.yaml")
    assert champ.to_dict() == study.trials[strong].user_attrs["evolve.config"]
    assert load_config(export).to_dict() == champ.to_dict()
    records = sorted((ws / "history").glob("*.yaml"))
    assert len(records) == 1
    rec = yaml.safe_load(records[0].read_text())
    assert rec["kind"] == "promotion" and rec["trial"] == strong and rec["forced"] is False
    v = rec["verdict"]
    assert v["metric"] == OBJECTIVE and v["delta"] > 0 and v["look"] == n_looks + 2
    assert v["carried"] == dry_look["level"] and v["level"] == pytest.approx(v["gamma"] * 0.05 + dry_look["level"])
    assert v["p_value"] == (v["b"] + 1) / (v["n_permutations"] + 1) <= v["level"] and v["seed"] == 0
    assert rec["previous_champion"] == weak.to_dict()
    assert rec["mlflow_run_id"] == study.trials[strong].user_attrs["evolve.mlflow_run_id"]
    # the sealed report metrics are revealed now: in the history, the promoted MLflow run and `status`
    assert rec["report_metrics"] == study.user_attrs[f"evolve.sealed_report.{strong}"]
    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    run = client.get_run(rec["mlflow_run_id"])
    assert run.data.tags["evolve.champion"] == "true"
    assert run.data.metrics["report_ndcg_at_10"] == pytest.approx(rec["report_metrics"]["ndcg@10"])
    assert client.get_model_version_by_alias("s-pipeline", "champion").run_id == rec["mlflow_run_id"]
    status = run_cli("status", "--workspace", str(ws))
    line = [x for x in status.stdout.splitlines() if x.startswith("champion: ")][0]
    assert f"(study s trial {strong}, promoted {rec['time']}; report (test): " in line
    assert f"ndcg@10 {rec['report_metrics']['ndcg@10']:.4f}" in line  # the report lists every sealed metric
    # rollback restores the weak champion and says so in the history
    rb = run_cli("rollback", "--workspace", str(ws))
    assert rb.returncode == 0, rb.stderr
    assert load_config(ws / "champion.yaml").to_dict() == weak.to_dict()
    assert len(list((ws / "history").glob("*-rollback.yaml"))) == 1
    assert len(_looks(ws)) == n_looks + 2  # a rollback is not a look


def test_a_significantly_worse_candidate_is_refused(promo):
    """The strong config as champion, the 16-d one as candidate: one-sided, p near 1, refused."""
    from evolve.config import PipelineConfig, config_to_yaml

    ws, by, weak, _ = promo
    strong_cfg = _study(ws).trials[by[(384, "flat")]].user_attrs["evolve.config"]
    before = (ws / "champion.yaml").read_text()
    (ws / "champion.yaml").write_text(config_to_yaml(PipelineConfig.model_validate(strong_cfg)))
    try:
        res = _promote(ws, "--trial", str(by[(16, "hnsw")]), "--dry-run")
        assert res.returncode == 0, res.stderr
        verdict = [x for x in res.stdout.splitlines() if x.startswith("verdict: ")][0]
        assert verdict.startswith(f"verdict: KEEP the champion: not significantly better on holdout {OBJECTIVE}: -")
        last = _looks(ws)[-1]
        assert last["delta"] < -0.1 and last["p_value"] > 0.99 and last["decision"] == "KEEP the champion"
    finally:
        (ws / "champion.yaml").write_text(before)


def test_holdout_budget_and_too_few_permutations_are_refused_before_a_look(promo):
    """--holdout-budget belongs to the old rule; --permutations N with 1/(N+1) above the look's level could never
    promote (issue 19, defect 2). Both: one line, exit 2, no look taken."""
    from evolve.looks import HoldoutLooks
    from evolve.workspace import Workspace

    ws, by, _, _ = promo
    pristine = ws.parent / "pristine"
    n_looks = len(_looks(pristine))
    level = HoldoutLooks(Workspace(pristine)).budget("any", alpha=None).level  # at most 0.05/102 = 4.9e-4
    assert level <= 0.05 / 102 + 1e-12
    res = _promote(pristine, "--trial", str(by[(384, "flat")]), "--holdout-budget", "20")
    assert res.returncode == 2 and "\n" not in res.stderr.strip()
    assert res.stderr.strip().startswith("error: --holdout-budget 20: expected no --holdout-budget")
    res = _promote(pristine, "--trial", str(by[(384, "flat")]), "--permutations", "999", "--dry-run")
    assert res.returncode == 2, res.stdout
    assert res.stderr.strip().startswith("error: --permutations 999: expected at least ") and "\n" not in res.stderr.strip()
    assert f"1/1000, is above look {n_looks + 1}'s level" in res.stderr
    assert "verdict" not in res.stdout
    assert len(_looks(pristine)) == n_looks  # a refused look is no look


# ------------------------------------------------------------------------------------------ one change at a time


def test_require_interleaving_that_failed_takes_no_holdout_look(promo):
    """Issue 19, defect 3: no interleaving of this candidate was ever served, so the interleaving check fails; it is
    made before the holdout is scored, and a failed check spends no look."""
    ws, by, _, _ = promo
    before, n_looks = (ws / "champion.yaml").read_text(), len(_looks(ws))
    res = _promote(ws, "--trial", str(by[(384, "flat")]), "--require-interleaving")
    assert res.returncode == 0, res.stderr
    assert len(_looks(ws)) == n_looks, _looks(ws)[-1]
    assert "no interleaving of this candidate against the current champion" in res.stdout
    assert f"verdict: KEEP the champion: trial {by[(384, 'flat')]} did not win the interleaving (no holdout look taken)" \
        in res.stdout
    assert "holdout verdict" not in res.stdout
    assert (ws / "champion.yaml").read_text() == before


def test_two_concurrent_promotions_are_one_after_the_other(promo, tmp_path):
    """Issue 19, defect 5: two promote-configs of different trials (both far better than the weak champion), each
    held at a barrier right after it read the champion until the other has read it too or is blocked on the
    champion lock (tests/promote_hooks.py). Without a lock over read-test-write both test against the weak
    champion and both win; with it, the second is tested against the first one's winner and names it as the
    previous champion."""
    import subprocess
    import sys

    from evolve.config import config_to_yaml
    from evolve.promote import current_champion, history
    from evolve.workspace import Workspace

    src, by, weak, _ = promo
    ws = tmp_path / "race"
    shutil.copytree(src.parent / "pristine", ws)
    (ws / "holdout_looks.jsonl").unlink(missing_ok=True)  # whatever the budget test recorded there
    shutil.rmtree(ws / "history", ignore_errors=True)
    (ws / "champion.yaml").write_text(config_to_yaml(weak))
    hooks = str(REPO / "tests" / "promote_hooks.py")
    procs = [subprocess.Popen([sys.executable, hooks, "barrier", str(tmp_path / "barrier"), "2", "--", "promote-config",
                               "--workspace", str(ws), "--trial", str(by[key])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for key in ((384, "flat"), (384, "hnsw"))]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    first, second = _looks(ws)
    assert first["promoted"] and first["decision"] == "PROMOTE", first  # each is far better than the weak one
    # tested against the first one's winner: its score on the holdout, not the weak champion's (an HNSW index may
    # be rebuilt with other ties, so "closer to", not "equal to")
    assert abs(second["champion_score"] - first["candidate_score"]) < abs(second["champion_score"] - first["champion_score"])
    assert second["champion_fingerprint"] == first["candidate_fingerprint"]
    records = history(Workspace(ws))
    assert records[0]["previous_champion"] == weak.to_dict()
    for before, after in zip(records, records[1:]):  # the chain of previous champions is unbroken
        assert after["previous_champion"] == before["config"]
    assert current_champion(Workspace(ws))[0].to_dict() == records[-1]["config"]
