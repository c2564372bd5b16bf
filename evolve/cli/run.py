"""``evolve run`` (one night of tuning) and ``evolve worker`` (join a study from another process or node)."""

from __future__ import annotations

from typing import Annotated

import typer

from evolve.cli._common import (
    CacheUrlOpt,
    DatasetOpt,
    FeedbackUrlOpt,
    GoldModeOpt,
    GoldOpt,
    SetOpt,
    StorageOpt,
    StrictOpt,
    StudyOpt,
    TrackingOpt,
    WorkspaceOpt,
)

__all__ = ["register"]

SpaceOpt = Annotated[str | None, typer.Option("--search-space", help="Search space YAML.", show_default="configs/search_space.yaml")]
StrategyOpt = Annotated[str, typer.Option(
    "--strategy", help="How trials are proposed: tpe (the shipped sampler), random, grid, greedy or cost (cost-aware); "
                       "benchmarks/search_replay.py compares them. Repeats of done configs never count against --trials.")]
SubsetOpt = Annotated[int | None, typer.Option("--subset", help="Keep N documents (every judged one first, then seeded fillers).")]


def _print_summary(summary, tracking_uri: str | None, workspace) -> None:
    from evolve.cli._common import out_console

    out_console.print(
        f"study {summary.study_name}: {len(summary.trial_numbers)} trial(s) this night: {summary.n_complete} complete, "
        f"{summary.n_pruned} pruned (saved ~{summary.pruned_saved_seconds:.0f}s), {summary.n_failed} failed, "
        f"{summary.n_repeats} answered from earlier results (not counted); {summary.wall_seconds:.0f}s",
        highlight=False,
    )
    if summary.stopped:
        out_console.print(summary.stopped, highlight=False, markup=False)
    if summary.best:
        out_console.print(f"best trial on the current corpus: #{summary.best['number']} = {summary.best['value']:.4f}", highlight=False)
    if summary.sealed_report:
        out_console.print(f"report (test) metrics of {len(summary.sealed_report)} best trial(s) computed and sealed: "
                          "shown only once a trial is promoted", highlight=False)
    out_console.print(f"MLflow parent run {summary.parent_run_id}; open it with: evolve dashboard --workspace {workspace.path}", highlight=False)


def run_command(
    dataset: DatasetOpt = "scifact",
    trials: Annotated[int | None, typer.Option("--trials", "-n", help="Run N more trials in this invocation (the study-wide total with --workers).")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Wall-clock budget in seconds; the trial in flight is finished, not cut.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the sampler only (the query split is fixed with the study).")] = None,
    strategy: StrategyOpt = "tpe",
    search_space: SpaceOpt = None,
    set_: SetOpt = None,
    objectives: Annotated[str | None, typer.Option("--objectives", help="Comma-separated, e.g. ndcg@10,latency_ms (multi-objective: no pruning).")] = None,
    continue_stale: Annotated[bool, typer.Option("--continue-stale", help="Continue the study although its search space or dataset changed (gold may grow without it).")] = False,
    split_seed: Annotated[int, typer.Option("--split-seed", help="Seed of the tune/holdout split, used only when the study is created.")] = 0,
    no_prune: Annotated[bool, typer.Option("--no-prune", help="Disable the Wilcoxon pruner.")] = False,
    heartbeat_interval: Annotated[int, typer.Option("--heartbeat-interval", help="Seconds between trial heartbeats.")] = 10,
    grace_period: Annotated[int, typer.Option("--grace-period", help="Seconds without heartbeat before a trial counts as dead.")] = 60,
    report_top: Annotated[int, typer.Option("--report-top", help="After tuning, compute report-split metrics for this many best trials, sealed until one is promoted.")] = 3,
    subset: SubsetOpt = None,
    strict: StrictOpt = False,
    workers: Annotated[int | None, typer.Option("--workers", help="Start N local worker processes on one study (T = study-wide total).")] = None,
    gpus: Annotated[str | None, typer.Option("--gpus", help="Comma-separated GPU ids: one worker per GPU (CUDA_VISIBLE_DEVICES).")] = None,
    worker: Annotated[bool, typer.Option("--worker", help="Join an existing study as one worker (same as `evolve worker`).")] = False,
    max_retry: Annotated[int, typer.Option("--max-retry", help="Retries of a trial whose worker died (worker mode).")] = 2,
    gold: GoldOpt = None,
    gold_mode: GoldModeOpt = None,
    holdout_prefer_reviewed: Annotated[bool, typer.Option(
        "--holdout-prefer-reviewed",
        help="New queries a person reviewed go to holdout first, up to the holdout fraction (roles, once given, never move).")] = False,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
    feedback_url: FeedbackUrlOpt = None,
):
    """Search pipeline configs with Optuna on tune queries; record every trial in MLflow.
    --feedback-url names the store that `--gold feedback` exports at the start of the night
    (evolve.cli.feedback.resolve_feedback_gold)."""
    if gold and not worker:  # `--gold feedback`: export the store once, before any worker starts
        from evolve.cli.feedback import resolve_feedback_gold
        from evolve.workspace import Workspace

        gold = resolve_feedback_gold(Workspace(workspace, cache_url).ensure(), gold, feedback_url)
    if worker or workers or gpus:  # --gpus alone: one worker per GPU id
        from evolve.cli.worker import run_workers, worker_command

        if worker:
            return worker_command(dataset=dataset, trials=trials, timeout=timeout, seed=seed, search_space=search_space,
                                  strategy=strategy,
                                  set_=set_,
                                  objectives=objectives, split_seed=split_seed, no_prune=no_prune, subset=subset,
                                  heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry,
                                  gold=gold, gold_mode=gold_mode, workspace=workspace, study=study, storage=storage, tracking_uri=tracking_uri,
                                  cache_url=cache_url)
        return run_workers(n=workers, trials=trials, timeout=timeout, gpus=gpus, dataset=dataset, seed=seed, set_=set_,
                           strategy=strategy,
                           search_space=search_space, objectives=objectives, split_seed=split_seed, no_prune=no_prune,
                           subset=subset, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                           max_retry=max_retry, report_top=report_top, gold=gold, gold_mode=gold_mode,
                           holdout_prefer_reviewed=holdout_prefer_reviewed, workspace=workspace, study=study,
                           storage=storage, tracking_uri=tracking_uri, cache_url=cache_url)
    from evolve.cli._common import rich_progress, study_options, trial_printer
    from evolve.study import run_study

    opts = study_options(dataset_spec=dataset, n_trials=trials, timeout=timeout, seed=seed, search_space=search_space,
                    strategy=strategy,
                    overrides=set_, objectives=objectives, continue_stale=continue_stale, split_seed=split_seed, prune=not no_prune,
                    heartbeat_interval=heartbeat_interval, grace_period=grace_period, report_top=report_top,
                    subset=subset, strict=strict, gold=gold, gold_mode=gold_mode,
                    holdout_prefer_reviewed=holdout_prefer_reviewed, workspace=workspace, study_name=study, storage_url=storage,
                    tracking_uri=tracking_uri, cache_url=cache_url)
    if trials is None and timeout is None:
        from evolve.errors import ConfigError

        raise ConfigError("expected a budget: --trials N and/or --timeout SECONDS, got neither")
    summary = run_study(opts, progress=rich_progress, on_trial=trial_printer())
    _print_summary(summary, tracking_uri, opts.workspace)
    if summary.all_failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
