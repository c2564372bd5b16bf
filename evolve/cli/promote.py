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
    One promotion or rollback at a time: the champion is read, tested and written under one lock.
    """
    from evolve.cli._common import load_study_view
    from evolve.errors import ConfigError
    from evolve.promote import champion_lock, current_champion, recover
    from evolve.workspace import Workspace

    if (trial is None) == (not best):
        raise ConfigError("expected exactly one of --trial N or --best")
    if max_p is not None and not 0 < max_p < 1:
        raise ConfigError(f"--max-p: expected a number in (0, 1), got {max_p}")
    if permutations is not None and permutations < 1:
        raise ConfigError(f"--permutations: expected at least 1, got {permutations}")
    ws = Workspace(workspace, cache_url).ensure()
    view = load_study_view(ws, study, storage, gold=gold, gold_mode=gold_mode)
    trial, frozen, candidate = _candidate(view, trial, best)
    gate = _Gate(ws, view, trial, candidate, max_p=max_p, holdout_budget=holdout_budget, permutations=permutations,
                 dry_run=dry_run, force=force)
    with champion_lock(ws):  # read the champion, test, record the look, write the champion: one change at a time
        recover(ws)
        gate.champion, gate.source = current_champion(ws)
        if candidate.fingerprint() == gate.champion.fingerprint():
            gate.warn_if_small()
            gate.say_same()
            return
        if require_interleaving:
            gate.interleaving = _interleaving(ws, feedback_url, gate.champion, candidate, max_p)
            if not gate.interleaving["passed"]:  # checked before the holdout: a failed check takes no look
                gate.say_no_interleaving()
                return
        gate.look_at_holdout()
        gate.say_verdict()
        if gate.promoting:
            gate.promote(frozen, export, tracking_uri)


def _candidate(view, trial: int | None, best: bool):
    """The candidate: (trial number, its frozen trial, the config it ran)."""
    from optuna.trial import TrialState

    from evolve.errors import ConfigError, EvolveError
    from evolve.study import best_trial_info, trial_config

    st = view.study
    if best:
        if len(st.directions) > 1:
            raise ConfigError("this study has several objectives (a Pareto front): expected --trial N, got --best")
        info = best_trial_info(st, view.corpus_fp, view.gold_fp)
        if info is None:
            raise EvolveError(f"study '{st.study_name}' has no completed trial on the current corpus and gold: "
                              "run `evolve run` first")
        trial = info["number"]
    frozen = next((t for t in st.get_trials(deepcopy=False) if t.number == trial), None)
    if frozen is None:
        raise ConfigError(f"--trial {trial}: no such trial in study '{st.study_name}'")
    if frozen.state != TrialState.COMPLETE:
        raise EvolveError(f"trial {trial} is {frozen.state.name}: only COMPLETE trials can be promoted (pruned and failed never)")
    candidate = trial_config(st, frozen)
    if candidate is None:
        raise EvolveError(f"trial {trial} recorded no config: expected a COMPLETE trial of `evolve run`")
    return trial, frozen, candidate


def _interleaving(ws, feedback_url, champion, candidate, max_p) -> dict:
    """``--require-interleaving``: did the candidate win ``evolve serve --challenger`` against this champion?"""
    from evolve.cli._common import out_console
    from evolve.feedback import interleaving_gate, interleaving_results, open_feedback_store

    with open_feedback_store(ws, feedback_url) as fb:
        results = interleaving_results(fb.queries(), fb.events())
    ok, why = interleaving_gate(results, champion.fingerprint(), candidate.fingerprint(),
                                max_p=max_p if max_p is not None else 0.05)
    out_console.print(why, highlight=False)
    return {"passed": ok, "reason": why}


class _Gate:
    """One promote-config run against the champion read under the lock: its holdout look and what it prints."""

    def __init__(self, ws, view, trial, candidate, *, max_p, holdout_budget, permutations, dry_run, force):
        self.ws, self.view, self.trial, self.candidate = ws, view, trial, candidate
        self.max_p, self.holdout_budget, self.permutations = max_p, holdout_budget, permutations
        self.dry_run, self.force = dry_run, force
        self.champion = self.source = self.interleaving = self.verdict = self.look = None
        self.passed = self.promoting = False

    def objective(self) -> str:
        from evolve.study import ATTR

        return (self.view.study.user_attrs.get(ATTR + "objectives") or "ndcg@10").split(",")[0]

    def warn_if_small(self, level: float | None = None) -> None:
        """The power warning at the level this look is (or the next look would be) tested at, on the objective."""
        from evolve.cli._common import err_console
        from evolve.gold._power import promotion_warning
        from evolve.looks import HoldoutLooks

        if level is None:
            level = HoldoutLooks(self.ws).budget(self.view.splits.holdout_fingerprint(), budget=self.holdout_budget,
                                                 alpha=self.max_p).level
        small = promotion_warning(self.view, self.ws, self.champion, alpha=level, metric=self.objective())
        if small:
            err_console.print(small, highlight=False, markup=False)

    def say_same(self) -> None:
        from evolve.cli._common import out_console

        out_console.print(f"champion: {self.source}", highlight=False)
        out_console.print(f"verdict: trial {self.trial} is the current champion itself; nothing to promote (no holdout "
                          "look taken)", highlight=False)

    def say_no_interleaving(self) -> None:
        from evolve.cli._common import out_console

        out_console.print(f"champion: {self.source}", highlight=False)
        out_console.print(f"verdict: KEEP the champion: trial {self.trial} did not win the interleaving (no holdout look "
                          "taken)", highlight=False)

    def look_at_holdout(self) -> None:
        """Budget, evaluate, test and record one look (under the look log's lock)."""
        from evolve.cache import EmbeddingCache
        from evolve.cli._common import rich_progress
        from evolve.looks import HoldoutLooks, permutations_for
        from evolve.promote import decide

        view, splits = self.view, self.view.splits
        objective = self.objective()
        self.holdout_fp = splits.holdout_fingerprint()
        looks = self.looks = HoldoutLooks(self.ws)
        with looks.lock():
            look = looks.budget(self.holdout_fp, budget=self.holdout_budget, alpha=self.max_p)
            permutations = self.permutations or permutations_for(look.level)
            looks.check_permutations(look, permutations)  # before the look: a refused look is one error line
            self.warn_if_small(look.level)
            cache = EmbeddingCache.open(self.ws)
            try:
                verdict = decide(self.candidate, self.champion, view.dataset, splits.qrels(view.dataset, "holdout"),
                                 look=look, metric=objective, cache=cache, progress=rich_progress, seed=splits.seed,
                                 n_permutations=permutations)
            finally:
                cache.close()
            self.passed = verdict.significant and (self.interleaving is None or self.interleaving["passed"])
            self.promoting = (self.passed or self.force) and not self.dry_run
            self.decision = "PROMOTE" if self.passed else ("PROMOTE (forced)" if self.force else "KEEP the champion")
            looks.record(look, study=view.study.study_name, trial=self.trial, dry_run=self.dry_run,
                         forced=self.force and not self.passed, decision=self.decision, promoted=self.promoting,
                         metric=objective, interleaving=self.interleaving, champion_score=verdict.champion_score,
                         candidate_score=verdict.candidate_score, delta=verdict.delta, p_value=verdict.p_value,
                         b=verdict.test.b, n_permutations=verdict.test.n_permutations, seed=verdict.test.seed,
                         n_queries=verdict.test.n_queries, champion_source=self.source,
                         champion_fingerprint=self.champion.fingerprint(),
                         candidate_fingerprint=self.candidate.fingerprint())
        self.verdict, self.look = verdict, look

    def say_verdict(self) -> None:
        from evolve.cli._common import out_console

        verdict = self.verdict
        out_console.print(_verdict_table(verdict, f"trial {self.trial}"))
        out_console.print(f"champion: {self.source}", highlight=False)
        reason = verdict.reason
        if self.interleaving is not None and verdict.significant:
            reason = f"{reason}; and it won the interleaving"
        out_console.print(f"verdict: {self.decision}: {reason}", highlight=False)
        if not self.promoting and self.dry_run:
            out_console.print(f"dry run: nothing written (look {self.look.look} of the workspace's looks recorded in "
                              f"{self.looks.path.name})", highlight=False)

    def promote(self, frozen, export, tracking_uri) -> None:
        """Write the champion (history record first), tag the MLflow run, reveal the sealed report metrics."""
        from evolve.cli._common import out_console
        from evolve.promote import mark_mlflow_champion, promote
        from evolve.provenance import provenance
        from evolve.study import ATTR, sealed_report

        st, view = self.view.study, self.view
        run_id = frozen.user_attrs.get(ATTR + "mlflow_run_id")
        report = sealed_report(st, self.trial)
        extra = {"interleaving": self.interleaving} if self.interleaving else {}
        record = promote(self.ws, self.candidate, self.verdict, trial=self.trial, mlflow_run_id=run_id,
                         study=st.study_name, holdout_fingerprint=self.holdout_fp, report_metrics=report,
                         forced=self.force and not self.passed, export=export,
                         provenance={**provenance(), "dataset_fingerprint": view.dataset.fingerprint,
                                     "gold_fingerprint": view.gold_fp, **extra})
        if run_id:
            mark_mlflow_champion(tracking_uri or self.ws.default_tracking_uri, run_id, st.study_name, report)
        out_console.print(f"wrote {self.ws.champion_path}" + (f" and {export}" if export else "") +
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
