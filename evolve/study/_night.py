"""One night: re-evaluate the champion, run the budget, report, record."""

from __future__ import annotations

import logging
import time

from evolve.cache import EmbeddingCache
from evolve.embedders import EmbedderPool
from evolve.evaluate import mlflow_name
from evolve.progress import ProgressFactory, null_progress
from evolve.study._champion import enqueue_champion
from evolve.study._identity import load_study_data, prepare_study
from evolve.study._objective import Objective, require_answers
from evolve.study._options import ATTR, NightSummary, StudyOptions
from evolve.study._recovery import engine_starts, mark_mlflow_failed, shutdown_engines, stop_after_failures
from evolve.study._report import best_trial_info, night_artifacts, seal_report

log = logging.getLogger("evolve.study")

__all__ = [
    "run_study",
    "prepare_workers",
    "seal_after_workers",
]


def run_study(opts: StudyOptions, *, progress: ProgressFactory = null_progress, on_trial=None) -> NightSummary:
    """One night: re-evaluate the champion, run the budget, report, record. Returns the night's summary."""
    from evolve.storage import check_storage_url, quiet_optuna

    quiet_optuna()  # failures are reported once, by evolve, in one line
    t_start = time.perf_counter()
    check_storage_url(opts.storage_url or opts.workspace.default_storage)
    ws = opts.workspace.ensure()
    dataset, gold = load_study_data(opts)
    night = _Night(opts, ws)
    storage, study, splits = prepare_study(opts, dataset, gold=gold, create=not opts.worker,
                                           failed_trial_callback=night.failed_trial_callback)
    require_answers(opts.objectives, dataset, splits.tune)  # before anything is started for the night
    night.follow(study)
    corpus_fp = dataset.corpus_fingerprint()
    gold_fp = splits.fingerprint(dataset, "tune")  # the tune gold every trial tonight is scored on
    tracker = night.tracker
    parent_id = tracker.start_run(f"{'worker' if opts.worker else 'night'}-{time.strftime('%Y%m%d-%H%M%S')}",
                                  tags=_parent_tags(opts, ws, study, dataset, gold, corpus_fp, gold_fp))
    summary = NightSummary(study.study_name, parent_id)
    tracker.log_params(parent_id, {
        "n_trials": opts.n_trials, "timeout": opts.timeout, "strategy": opts.strategy, "sampler_seed": opts.seed, "split_seed": splits.seed,
        "objectives": ",".join(opts.objectives), "n_tune": len(splits.tune), "n_holdout": len(splits.holdout),
        "n_report": len(splits.report), "study_total": opts.study_total,
        "n_excluded_same_text": len(splits.excluded), **gold.mlflow_params(),
    })
    cache = EmbeddingCache.open(ws)  # + the shared cache behind it when the workspace names one (EVOLVE_CACHE_URL)
    embedders = EmbedderPool()
    objective = Objective(opts, dataset, splits, tracker, parent_id, cache, embedders, progress)
    if not opts.worker:
        enqueue_champion(study, opts, corpus_fp, gold_fp)
    started: list[int] = []
    status = "FINISHED"
    try:
        _optimize(study, objective, opts, started, on_trial, summary, corpus_fp, gold_fp)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            mine = [t for t in study.get_trials(deepcopy=False) if t.number in set(started)]
            _count_trials(summary, mine)
            if status == "FINISHED" and not opts.worker and opts.report_top > 0:
                summary.sealed_report = seal_report(study, opts, dataset, splits, cache, embedders, progress, corpus_fp)
            summary.best = best_trial_info(study, corpus_fp, gold_fp)
            summary.wall_seconds = time.perf_counter() - t_start
            _log_night_metrics(tracker, parent_id, opts, summary)
            if status == "FINISHED":
                night_artifacts(study, opts, summary, tracker, parent_id, corpus_fp, gold_fp)
            if objective.cache_stats.n_texts:
                from evolve._io import atomic_write_json

                atomic_write_json(ws.last_run_path, {"command": "run", **objective.cache_stats.as_dict()})
            if summary.all_failed:
                status = "FAILED"
        finally:
            tracker.end_run(parent_id, status)
            tracker.close()
            embedders.close()
            cache.close()
            shutdown_engines()
    return summary


class _Night:
    """The night's MLflow tracker and the callbacks a failed trial goes through (MLflow FAILED, then Optuna's
    retry), re-pointed when the study turns out to have another name (``NAME-<hash>``)."""

    def __init__(self, opts: StudyOptions, ws):
        from evolve.secrets import warn_inline_password

        self.opts = opts
        self.tracking_uri = opts.tracking_uri or ws.default_tracking_uri
        warn_inline_password(self.tracking_uri, "tracking URI")
        self.artifact_root = ws.artifacts_dir if self.tracking_uri.startswith(("sqlite:", "file:", "/")) else None
        self.tracker = self._tracker(opts.study_name)
        self.callbacks = [mark_mlflow_failed(self.tracker)]
        if opts.max_retry is not None:
            from optuna import storages

            retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
            self.callbacks.append(retry(max_retry=opts.max_retry, inherit_intermediate_values=False))

    def _tracker(self, name: str):
        from evolve.tracking import Tracker

        return Tracker(self.tracking_uri, name, artifact_root=self.artifact_root,
                       heartbeat_interval=self.opts.heartbeat_interval)

    def failed_trial_callback(self, study, trial):
        for cb in self.callbacks:
            cb(study, trial)

    def follow(self, study) -> None:
        """Track under the study's real name; fail what dead processes left RUNNING (MLflow runs, Optuna trials)."""
        import optuna

        if study.study_name != self.opts.study_name:
            self.tracker.close()
            self.tracker = self._tracker(study.study_name)
            self.callbacks[0] = mark_mlflow_failed(self.tracker)
        self.tracker.fail_stale_runs(self.opts.grace_period)
        optuna.storages.fail_stale_trials(study)


def _parent_tags(opts: StudyOptions, ws, study, dataset, gold, corpus_fp: str, gold_fp: str) -> dict:
    """The night's provenance, as tags of its MLflow parent run."""
    from evolve.provenance import provenance
    from evolve.secrets import redact_url

    prov = provenance()
    return {
        "evolve_kind": "worker" if opts.worker else "night",
        "optuna_study": study.study_name,
        "optuna_storage": redact_url(opts.storage_url or ws.default_storage),
        "git_commit": prov["git_commit"],
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint,
        "corpus_fingerprint": corpus_fp,
        "qrels_fingerprint": dataset.qrels_fingerprint(),
        "gold_fingerprint": gold_fp,
        **gold.mlflow_tags(),
        "search_space_hash": opts.space.hash(),
        "python": prov["python"],
        **{f"version.{k}": v for k, v in prov["packages"].items()},
    }


def _optimize(study, objective, opts: StudyOptions, started: list[int], on_trial, summary: NightSummary,
              corpus_fp: str, gold_fp: str) -> None:
    """Run the night's budget: ``--trials``/``--timeout``, or the study-wide total (``--study-total``) within the
    deadline. Repeats never count: the budget callback stops the night (``--trials``, the study-wide total, an
    exhausted space), so Optuna itself is given no trial count. ``started`` collects the trial numbers this
    process ran; ``summary.stopped`` says why the night stopped early (an exhausted space), if it did."""

    def record(study_, trial):
        started.append(trial.number)
        if on_trial is not None:
            on_trial(trial)

    budget, done_distinct = _night_budget(opts, study, objective, corpus_fp, gold_fp)

    def spend(study_, trial):
        budget.record(ATTR + "repeat_of" in trial.user_attrs)
        if budget.should_stop(done_distinct()):
            study_.stop()

    optuna_callbacks = [record, spend]
    if opts.study_total is not None:
        optuna_callbacks.append(_study_total(opts.study_total))
        optuna_callbacks.append(stop_after_failures(5))
    timeout = opts.timeout
    if opts.deadline is not None:
        left = opts.deadline - time.time()
        timeout = left if timeout is None else min(timeout, left)
    room = opts.n_trials if opts.study_total is None else opts.study_total - _counted(study)
    summary.stopped = budget.exhausted(done_distinct())
    if (room is None or room > 0) and (timeout is None or timeout > 0) and summary.stopped is None:
        study.optimize(objective, n_trials=None, timeout=timeout, catch=(Exception,),
                       callbacks=optuna_callbacks, gc_after_trial=False, show_progress_bar=False)
        summary.stopped = budget.stopped


def _count_trials(summary: NightSummary, mine: list) -> None:
    """The night's counts (complete, pruned, failed, repeats) and the time pruning saved, into ``summary``."""
    from optuna.trial import TrialState

    summary.trial_numbers = sorted(t.number for t in mine)
    summary.n_complete = sum(t.state == TrialState.COMPLETE for t in mine)
    summary.n_pruned = sum(t.state == TrialState.PRUNED for t in mine)
    summary.n_failed = sum(t.state == TrialState.FAIL for t in mine)
    summary.n_repeats = sum(ATTR + "repeat_of" in t.user_attrs for t in mine)
    done = [t.user_attrs.get(ATTR + "duration_seconds", 0.0) for t in mine
            if t.state == TrialState.COMPLETE and ATTR + "repeat_of" not in t.user_attrs]
    mean_done = sum(done) / len(done) if done else 0.0
    summary.pruned_saved_seconds = sum(
        max(0.0, mean_done - t.user_attrs.get(ATTR + "duration_seconds", 0.0))
        for t in mine if t.state == TrialState.PRUNED
    )


def _log_night_metrics(tracker, parent_id: str, opts: StudyOptions, summary: NightSummary) -> None:
    engines = engine_starts()
    tracker.log_metrics(parent_id, {
        **({"vllm_engine_starts": engines} if engines is not None else {}),
        "n_complete": summary.n_complete, "n_pruned": summary.n_pruned, "n_failed": summary.n_failed,
        "n_repeats": summary.n_repeats, "pruned_saved_seconds": summary.pruned_saved_seconds,
        "wall_seconds": summary.wall_seconds,
        **({"best_tune_" + mlflow_name(opts.objectives[0]): summary.best["value"]} if summary.best else {}),
    })


def _counted(study) -> int:
    """Trials of the study that count against a study-wide total: complete or pruned, repeats left out."""
    from optuna.trial import TrialState

    return sum(ATTR + "repeat_of" not in t.user_attrs
               for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _study_total(total: int):
    """Stops the night once the study holds ``total`` counted trials (``evolve run --workers``)."""

    def callback(study, trial):
        if _counted(study) >= total:
            study.stop()

    return callback


def _night_budget(opts: StudyOptions, study, objective: Objective, corpus_fp: str, gold_fp: str):
    """The night's :class:`~evolve.study._strategy.Budget` (``--trials``; repeats free; the space's size when
    finite) and a function counting the distinct effective configs done (complete or pruned) on this corpus and
    tune gold, every worker's included."""
    from optuna.trial import TrialState

    from evolve.study._strategy import Budget, space_size
    from evolve.trials import comparable_trials

    budget = Budget(opts.n_trials if opts.study_total is None else None, size=space_size(opts.space),
                    max_repeats=opts.max_repeats)

    def done_distinct() -> int:
        trials = comparable_trials(study, corpus_fp, gold_fp, states=(TrialState.COMPLETE, TrialState.PRUNED))
        return len({objective.trial_key(t) for t in trials} - {None})

    return budget, done_distinct


def prepare_workers(opts: StudyOptions):
    """What ``evolve run --workers`` does before it starts its workers: create (or continue) the study once and
    enqueue the champion first, as a night does. Returns the study and the gold
    spec the workers must load."""
    dataset, gold = load_study_data(opts)
    _, study, splits = prepare_study(opts, dataset, gold=gold)
    enqueue_champion(study, opts, dataset.corpus_fingerprint(), splits.fingerprint(dataset, "tune"))
    return study, gold.spec


def seal_after_workers(opts: StudyOptions, *, progress: ProgressFactory = null_progress) -> list[int]:
    """After ``evolve run --workers``: seal the report-split metrics of the best ``opts.report_top`` trials (the
    workers themselves never touch the report split). Returns the trial numbers sealed."""
    if opts.report_top <= 0:
        return []
    ws = opts.workspace.ensure()
    dataset, gold = load_study_data(opts)
    _, study, splits = prepare_study(opts, dataset, gold=gold, create=False)
    cache = EmbeddingCache.open(ws)
    embedders = EmbedderPool()
    try:
        return seal_report(study, opts, dataset, splits, cache, embedders, progress, dataset.corpus_fingerprint())
    finally:
        embedders.close()
        cache.close()
        shutdown_engines()
