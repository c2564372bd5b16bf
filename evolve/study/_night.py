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
    import optuna
    from optuna.trial import TrialState

    from evolve.provenance import provenance
    from evolve.secrets import redact_url
    from evolve.storage import check_storage_url, quiet_optuna
    from evolve.tracking import Tracker

    quiet_optuna()  # failures are reported once, by evolve, in one line
    t_start = time.perf_counter()
    check_storage_url(opts.storage_url or opts.workspace.default_storage)
    ws = opts.workspace.ensure()
    dataset, gold = load_study_data(opts)
    tracking_uri = opts.tracking_uri or ws.default_tracking_uri
    from evolve.secrets import warn_inline_password

    warn_inline_password(tracking_uri, "tracking URI")
    artifact_root = ws.artifacts_dir if tracking_uri.startswith(("sqlite:", "file:", "/")) else None
    tracker = Tracker(tracking_uri, opts.study_name, artifact_root=artifact_root,
                      heartbeat_interval=opts.heartbeat_interval)
    callbacks = [mark_mlflow_failed(tracker)]
    if opts.max_retry is not None:
        from optuna import storages

        retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
        callbacks.append(retry(max_retry=opts.max_retry, inherit_intermediate_values=False))

    def failed_trial_callback(study, trial):
        for cb in callbacks:
            cb(study, trial)

    storage, study, splits = prepare_study(opts, dataset, gold=gold, create=not opts.worker,
                                           failed_trial_callback=failed_trial_callback)
    if study.study_name != opts.study_name:
        tracker.close()
        tracker = Tracker(tracking_uri, study.study_name, artifact_root=artifact_root,
                          heartbeat_interval=opts.heartbeat_interval)
        callbacks[0] = mark_mlflow_failed(tracker)
    require_answers(opts.objectives, dataset, splits.tune)  # before anything is started for the night
    tracker.fail_stale_runs(opts.grace_period)
    optuna.storages.fail_stale_trials(study)
    corpus_fp = dataset.corpus_fingerprint()
    gold_fp = splits.fingerprint(dataset, "tune")  # the tune gold every trial tonight is scored on
    prov = provenance()
    parent_tags = {
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
    night = time.strftime("%Y%m%d-%H%M%S")
    parent_id = tracker.start_run(f"{'worker' if opts.worker else 'night'}-{night}", tags=parent_tags)
    summary = NightSummary(study.study_name, parent_id)
    tracker.log_params(parent_id, {
        "n_trials": opts.n_trials, "timeout": opts.timeout, "sampler_seed": opts.seed, "split_seed": splits.seed,
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

    def record(study_, trial):
        started.append(trial.number)
        if on_trial is not None:
            on_trial(trial)

    optuna_callbacks = [record]
    if opts.study_total is not None:
        from optuna.study import MaxTrialsCallback

        optuna_callbacks.append(MaxTrialsCallback(opts.study_total, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        optuna_callbacks.append(stop_after_failures(5))
    status = "FINISHED"
    try:
        if opts.study_total is not None:
            done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
            # the study-wide budget is enforced by MaxTrialsCallback; failures are capped by _stop_after_failures
            n_trials = None if done < opts.study_total else 0
        else:
            n_trials = opts.n_trials
        timeout = opts.timeout
        if opts.deadline is not None:
            left = opts.deadline - time.time()
            timeout = left if timeout is None else min(timeout, left)
        if (n_trials is None or n_trials > 0) and (timeout is None or timeout > 0):
            study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(Exception,),
                           callbacks=optuna_callbacks, gc_after_trial=False, show_progress_bar=False)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            mine = [t for t in study.get_trials(deepcopy=False) if t.number in set(started)]
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
            if status == "FINISHED" and not opts.worker and opts.report_top > 0:
                summary.sealed_report = seal_report(study, opts, dataset, splits, cache, embedders, progress, corpus_fp)
            summary.best = best_trial_info(study, corpus_fp, gold_fp)
            summary.wall_seconds = time.perf_counter() - t_start
            engines = engine_starts()
            tracker.log_metrics(parent_id, {
                **({"vllm_engine_starts": engines} if engines is not None else {}),
                "n_complete": summary.n_complete, "n_pruned": summary.n_pruned, "n_failed": summary.n_failed,
                "n_repeats": summary.n_repeats, "pruned_saved_seconds": summary.pruned_saved_seconds,
                "wall_seconds": summary.wall_seconds,
                **({"best_tune_" + mlflow_name(opts.objectives[0]): summary.best["value"]} if summary.best else {}),
            })
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
