"""``evolve promote-config`` and ``evolve rollback``."""

from __future__ import annotations

from typing import Annotated

import typer

from evolve.cli._common import (
    CacheUrlOpt,
    FeedbackUrlOpt,
    GoldModeOpt,
    GoldOpt,
    StorageOpt,
    StudyOpt,
    TrackingOpt,
    WorkspaceOpt,
)

__all__ = ["register"]


def _verdict_table(v, candidate_label: str):
    from rich.table import Table

    from evolve.promote import format_p

    t = Table(title=f"holdout verdict ({v.test.n_queries} queries, {v.metric}, one-sided paired permutation test)",
              title_justify="left")
    for col in ("", v.metric, "delta", "p-value", "win", "tie", "loss"):
        t.add_column(col, justify="right" if col else "left")
    t.add_row("champion", f"{v.champion_score:.4f}", "", "", "", "", "")
    t.add_row(candidate_label, f"{v.candidate_score:.4f}", f"{v.delta:+.4f}", format_p(v.p_value), str(v.test.win),
              str(v.test.tie), str(v.test.loss))
    return t


def promote_command(
    trial: Annotated[int | None, typer.Option("--trial", help="Candidate trial number.")] = None,
    best: Annotated[bool, typer.Option("--best", help="Candidate: the best completed trial on the current corpus.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the verdict; write no champion (the look still counts).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Promote even without a significant win (recorded as forced).")] = False,
    export: Annotated[str | None, typer.Option("--export", help="Also write the champion YAML here (for a deployment repository).")] = None,
    max_p: Annotated[float | None, typer.Option("--max-p", help="Family-wise significance level over every look the workspace ever takes (alpha-spending with online fallback); fixed by its first look.", show_default="0.05")] = None,
    holdout_budget: Annotated[int | None, typer.Option("--holdout-budget", help="Refused: the look rule has no budget to declare (docs/promotion.md).", hidden=True)] = None,
    permutations: Annotated[int | None, typer.Option("--permutations", help="Random sign assignments of the paired permutation test; refused when 1/(N+1) is above the look's level.", show_default="10000, or 5/level when more")] = None,
    search_space: Annotated[str | None, typer.Option("--search-space", help="The study's search space.")] = None,
    gold: GoldOpt = None,
    gold_mode: GoldModeOpt = None,
    require_interleaving: Annotated[bool, typer.Option("--require-interleaving", help="Also require the candidate to have won `evolve serve --challenger` interleaving against this champion (one-sided sign test, p <= --max-p, at least 30 queries with a preference).")] = False,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
    feedback_url: FeedbackUrlOpt = None,
):
    """Promote a trial's config to champion only if it beats the champion on holdout queries, significantly.

    Every evaluation on the holdout counts as a look (dry runs and refusals too), recorded in
    <workspace>/holdout_looks.jsonl; look j is tested at max-p * gamma_j, plus the previous look's level when that
    look's test rejected (alpha-spending with online fallback over every look of the workspace).
    """
    from optuna.trial import TrialState

    from evolve.cache import EmbeddingCache
    from evolve.cli._common import err_console, load_study_view, out_console, rich_progress
    from evolve.config import PipelineConfig
    from evolve.errors import ConfigError, EvolveError
    from evolve.gold._power import promotion_warning
    from evolve.looks import HoldoutLooks, permutations_for
    from evolve.promote import current_champion, decide, mark_mlflow_champion, promote
    from evolve.provenance import provenance
    from evolve.study import ATTR, best_trial_info, sealed_report
    from evolve.workspace import Workspace

    if (trial is None) == (not best):
        raise ConfigError("expected exactly one of --trial N or --best")
    if max_p is not None and not 0 < max_p < 1:
        raise ConfigError(f"--max-p: expected a number in (0, 1), got {max_p}")
    if permutations is not None and permutations < 1:
        raise ConfigError(f"--permutations: expected at least 1, got {permutations}")
    ws = Workspace(workspace, cache_url).ensure()
    view = load_study_view(ws, study, storage, gold=gold, gold_mode=gold_mode)
    st, dataset, splits = view.study, view.dataset, view.splits
    objective = (st.user_attrs.get(ATTR + "objectives") or "ndcg@10").split(",")[0]
    corpus_fp = view.corpus_fp
    if best:
        if len(st.directions) > 1:
            raise ConfigError("this study has several objectives (a Pareto front): expected --trial N, got --best")
        info = best_trial_info(st, corpus_fp, view.gold_fp)
        if info is None:
            raise EvolveError(f"study '{st.study_name}' has no completed trial on the current corpus and gold: "
                              "run `evolve run` first")
        trial = info["number"]
    frozen = next((t for t in st.get_trials(deepcopy=False) if t.number == trial), None)
    if frozen is None:
        raise ConfigError(f"--trial {trial}: no such trial in study '{st.study_name}'")
    if frozen.state != TrialState.COMPLETE:
        raise EvolveError(f"trial {trial} is {frozen.state.name}: only COMPLETE trials can be promoted (pruned and failed never)")
    cfg_dict = frozen.user_attrs.get(ATTR + "config")
    if not cfg_dict and ATTR + "repeat_of" in frozen.user_attrs:
        cfg_dict = st.trials[frozen.user_attrs[ATTR + "repeat_of"]].user_attrs.get(ATTR + "config")
    candidate = PipelineConfig.model_validate(cfg_dict)
    champion, source = current_champion(ws)

    holdout_fp = splits.holdout_fingerprint()
    looks = HoldoutLooks(ws)

    def warn_if_small(level: float) -> None:  # at the level this look is tested at, on the study's objective
        small = promotion_warning(view, ws, champion, alpha=level, metric=objective)
        if small:
            err_console.print(small, highlight=False, markup=False)

    if candidate.fingerprint() == champion.fingerprint():
        warn_if_small(looks.budget(holdout_fp, budget=holdout_budget, alpha=max_p).level)
        out_console.print(f"champion: {source}", highlight=False)
        out_console.print(f"verdict: trial {trial} is the current champion itself; nothing to promote (no holdout look taken)",
                          highlight=False)
        return
    interleaving = None
    if require_interleaving:
        from evolve.feedback import interleaving_gate, interleaving_results, open_feedback_store

        with open_feedback_store(ws, feedback_url) as fb:
            results = interleaving_results(fb.queries(), fb.events())
        ok, why = interleaving_gate(results, champion.fingerprint(), candidate.fingerprint(),
                                    max_p=max_p if max_p is not None else 0.05)
        interleaving = {"passed": ok, "reason": why}
        out_console.print(why, highlight=False)
    with looks.lock():
        look = looks.budget(holdout_fp, budget=holdout_budget, alpha=max_p)
        permutations = permutations or permutations_for(look.level)
        looks.check_permutations(look, permutations)  # before the look: a refused look is one error line
        warn_if_small(look.level)
        cache = EmbeddingCache.open(ws)
        try:
            verdict = decide(candidate, champion, dataset, splits.qrels(dataset, "holdout"), look=look, metric=objective,
                             cache=cache, progress=rich_progress, seed=splits.seed, n_permutations=permutations)
        finally:
            cache.close()
        passed = verdict.significant and (interleaving is None or interleaving["passed"])
        promoting = (passed or force) and not dry_run
        decision = "PROMOTE" if passed else ("PROMOTE (forced)" if force else "KEEP the champion")
        looks.record(look, study=st.study_name, trial=trial, dry_run=dry_run, forced=force and not passed,
                     decision=decision, promoted=promoting, metric=objective, interleaving=interleaving,
                     champion_score=verdict.champion_score,
                     candidate_score=verdict.candidate_score, delta=verdict.delta, p_value=verdict.p_value,
                     b=verdict.test.b, n_permutations=verdict.test.n_permutations, seed=verdict.test.seed,
                     n_queries=verdict.test.n_queries, champion_source=source)
    out_console.print(_verdict_table(verdict, f"trial {trial}"))
    out_console.print(f"champion: {source}", highlight=False)
    reason = verdict.reason
    if interleaving is not None and verdict.significant:
        reason = (f"{reason}; and it won the interleaving" if interleaving["passed"]
                  else f"{reason}, but it did not win the interleaving")
    out_console.print(f"verdict: {decision}: {reason}", highlight=False)
    if not promoting:
        if dry_run:
            out_console.print(f"dry run: nothing written (look {look.look} of the workspace's looks recorded in "
                              f"{looks.path.name})", highlight=False)
        return
    run_id = frozen.user_attrs.get(ATTR + "mlflow_run_id")
    report = sealed_report(st, trial)
    record = promote(ws, candidate, verdict, trial=trial, mlflow_run_id=run_id, study=st.study_name,
                     holdout_fingerprint=holdout_fp, report_metrics=report, forced=force and not passed,
                     export=export, provenance={**provenance(), "dataset_fingerprint": dataset.fingerprint,
                                                "gold_fingerprint": view.gold_fp,
                                                **({"interleaving": interleaving} if interleaving else {})})
    if run_id:
        uri = tracking_uri or ws.default_tracking_uri
        mark_mlflow_champion(uri, run_id, st.study_name, report)
    out_console.print(f"wrote {ws.champion_path}" + (f" and {export}" if export else "") +
                      f"; history record {record['time']}", highlight=False)
    if report:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in report.items())
        out_console.print(f"report (test) metrics of the new champion, revealed now: {shown}", highlight=False)


def rollback_command(
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
):
    """Restore the champion from before the latest promotion."""
    from evolve.cli._common import out_console
    from evolve.promote import rollback
    from evolve.workspace import Workspace

    ws = Workspace(workspace).ensure()
    record = rollback(ws)
    where = ws.champion_path if ws.champion_path.exists() else "the shipped default (configs/default.yaml)"
    out_console.print(f"rolled back: the champion is again {where} (undid {record['undoes']})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("promote-config")(promote_command)
    app.command("rollback")(rollback_command)
