"""``evolve promote-config`` and ``evolve rollback``."""

from __future__ import annotations

from typing import Annotated

import typer

from evolve.cli._common import CacheUrlOpt, FeedbackUrlOpt, StorageOpt, StudyOpt, TrackingOpt, WorkspaceOpt

__all__ = ["register"]


def _verdict_table(v, candidate_label: str):
    from rich.table import Table

    t = Table(title=f"holdout verdict ({v.n_queries} queries, {v.metric}, Fisher randomization test)", title_justify="left")
    for col in ("", v.metric, "delta", "p-value", "win", "tie", "loss"):
        t.add_column(col, justify="right" if col else "left")
    t.add_row("champion", f"{v.champion_score:.4f}", "", "", "", "", "")
    t.add_row(candidate_label, f"{v.candidate_score:.4f}", f"{v.delta:+.4f}", f"{v.p_value:.4f}", str(v.win), str(v.tie), str(v.loss))
    return t


def promote_command(
    trial: Annotated[int | None, typer.Option("--trial", help="Candidate trial number.")] = None,
    best: Annotated[bool, typer.Option("--best", help="Candidate: the best completed trial on the current corpus.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the verdict; write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Promote even without a significant win (recorded as forced).")] = False,
    export: Annotated[str | None, typer.Option("--export", help="Also write the champion YAML here (for a deployment repository).")] = None,
    max_p: Annotated[float, typer.Option("--max-p", help="Significance level of the paired test.")] = 0.05,
    search_space: Annotated[str | None, typer.Option("--search-space", help="The study's search space.")] = None,
    require_interleaving: Annotated[bool, typer.Option("--require-interleaving", help="Also require the candidate to have won `evolve serve --challenger` interleaving against this champion (one-sided sign test, p <= --max-p, at least 30 queries with a preference).")] = False,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
    feedback_url: FeedbackUrlOpt = None,
):
    """Promote a trial's config to champion only if it beats the champion on holdout queries, significantly."""
    from optuna.trial import TrialState

    from evolve.cache import EmbeddingCache
    from evolve.cli._common import err_console, load_workspace_study, out_console, rich_progress
    from evolve.config import PipelineConfig
    from evolve.errors import ConfigError, EvolveError
    from evolve.promote import HOLDOUT_REUSE_WARN, current_champion, decide, holdout_uses, mark_mlflow_champion, promote
    from evolve.provenance import provenance
    from evolve.splits import QuerySplits
    from evolve.study import ATTR, best_trial_info
    from evolve.workspace import Workspace

    if (trial is None) == (not best):
        raise ConfigError("expected exactly one of --trial N or --best")
    if not 0 < max_p < 1:
        raise ConfigError(f"--max-p: expected a number in (0, 1), got {max_p}")
    ws = Workspace(workspace, cache_url).ensure()
    st, dataset = load_workspace_study(ws, study, storage)
    splits = QuerySplits.from_dict(st.user_attrs[ATTR + "splits"])
    corpus_fp = dataset.corpus_fingerprint()
    if best:
        if len(st.directions) > 1:
            raise ConfigError("this study has several objectives (a Pareto front): expected --trial N, got --best")
        info = best_trial_info(st, corpus_fp)
        if info is None:
            raise EvolveError(f"study '{st.study_name}' has no completed trial on the current corpus: run `evolve run` first")
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
    cache = EmbeddingCache.open(ws)
    try:
        verdict = decide(candidate, champion, dataset, splits.qrels(dataset, "holdout"), cache=cache,
                         progress=rich_progress, max_p=max_p, seed=splits.seed)
    finally:
        cache.close()
    out_console.print(_verdict_table(verdict, f"trial {trial}"))
    out_console.print(f"champion: {source}", highlight=False)
    uses = holdout_uses(ws, splits.holdout_fingerprint())
    if uses >= HOLDOUT_REUSE_WARN:
        err_console.print(f"warning: this holdout set already decided {uses} promotions: a reused holdout stops being "
                          "held out; consider a new study (--split-seed) or fresh gold queries", highlight=False)
    if verdict.same_config:
        out_console.print("verdict: the best trial is the current champion itself; nothing to promote", highlight=False)
        return
    passed, interleaving = verdict.significant, None
    if require_interleaving:
        from evolve.feedback import interleaving_gate, interleaving_results, open_feedback_store

        with open_feedback_store(ws, feedback_url) as fb:
            results = interleaving_results(fb.queries(), fb.events())
        ok, why = interleaving_gate(results, champion.fingerprint(), candidate.fingerprint(), max_p=max_p)
        interleaving = {"passed": ok, "reason": why}
        out_console.print(why, highlight=False)
        passed = passed and ok
    reason = verdict.reason
    if interleaving is not None and verdict.significant:
        reason = (f"{reason}; and it won the interleaving" if interleaving["passed"]
                  else f"{reason}, but it did not win the interleaving")
    decision = "PROMOTE" if passed else ("PROMOTE (forced)" if force else "KEEP the champion")
    out_console.print(f"verdict: {decision}: {reason}", highlight=False)
    if dry_run or not (passed or force):
        if dry_run:
            out_console.print("dry run: nothing written", highlight=False)
        return
    run_id = frozen.user_attrs.get(ATTR + "mlflow_run_id")
    report = st.user_attrs.get(ATTR + f"report.{trial}")
    record = promote(ws, candidate, verdict, trial=trial, mlflow_run_id=run_id, study=st.study_name,
                     holdout_fingerprint=splits.holdout_fingerprint(), report_metrics=report, forced=force and not passed,
                     export=export, provenance={**provenance(), "dataset_fingerprint": dataset.fingerprint,
                                                **({"interleaving": interleaving} if interleaving else {})})
    if run_id:
        uri = tracking_uri or ws.default_tracking_uri
        mark_mlflow_champion(uri, run_id, st.study_name)
    out_console.print(f"wrote {ws.champion_path}" + (f" and {export}" if export else "") +
                      f"; history record {record['time']}", highlight=False)


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
