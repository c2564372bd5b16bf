"""The nightly loop: Optuna proposes, the pipeline evaluates on tune queries, MLflow records.

One :func:`run_study` call is one ``evolve run`` invocation (a "night"): one MLflow parent run, one child run
per trial. The study lives in persistent Optuna storage and is continued night after night.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.cache import CacheStats, EmbeddingCache
from evolve.config import PipelineConfig, config_to_yaml, flatten, load_config
from evolve.datasets import Dataset
from evolve.errors import ConfigError, EvolveError
from evolve.evaluate import PRIMARY_METRIC, evaluate_run, mlflow_name, write_trec_run
from evolve.pipeline import EmbedderPool, Pipeline
from evolve.progress import ProgressFactory, null_progress
from evolve.search_space import SearchSpace
from evolve.splits import QuerySplits, make_splits
from evolve.workspace import Workspace

__all__ = [
    "StudyOptions",
    "NightSummary",
    "run_study",
    "open_study",
    "study_identity",
    "current_trials",
    "parse_objectives",
    "LATENCY",
]

log = logging.getLogger("evolve.study")

LATENCY = "latency_ms"
ATTR = "evolve."  # prefix of every study/trial attribute evolve writes


@dataclass
class StudyOptions:
    dataset_spec: str
    space: SearchSpace
    workspace: Workspace
    study_name: str = "evolve"
    storage_url: str | None = None
    tracking_uri: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    seed: int | None = None
    split_seed: int = 0
    holdout_fraction: float = 0.3
    objectives: tuple[str, ...] = (PRIMARY_METRIC,)
    continue_stale: bool = False
    heartbeat_interval: int = 10
    grace_period: int = 60
    prune: bool = True
    prune_batch: int = 50
    report_top: int = 3
    subset: int | None = None
    strict: bool = False
    # distributed mode (evolve worker): a study-wide budget and retries of trials whose worker died
    study_total: int | None = None
    deadline: float | None = None
    max_retry: int | None = None
    worker: bool = False


@dataclass
class NightSummary:
    study_name: str
    parent_run_id: str
    n_complete: int = 0
    n_pruned: int = 0
    n_failed: int = 0
    n_repeats: int = 0
    pruned_saved_seconds: float = 0.0
    wall_seconds: float = 0.0
    best: dict | None = None
    report: dict = field(default_factory=dict)
    trial_numbers: list[int] = field(default_factory=list)

    @property
    def all_failed(self) -> bool:
        return bool(self.trial_numbers) and self.n_failed == len(self.trial_numbers)


# ----------------------------------------------------------------------------------------------- identity


def parse_objectives(text: str | None) -> tuple[str, ...]:
    if not text:
        return (PRIMARY_METRIC,)
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    import re

    for n in names:
        if n != LATENCY and not re.fullmatch(r"(ndcg|recall|mrr|map|precision|hit_rate|hits|f1|r-precision|bpref)(@\d+)?", n):
            raise ConfigError(f"objective '{n}': expected a ranx metric like ndcg@10 or '{LATENCY}'")
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives must be distinct, got '{text}'")
    if names[0] == LATENCY:
        raise ConfigError(f"the first objective must be a quality metric, got '{LATENCY}'")
    return names


def study_identity(space: SearchSpace, dataset: Dataset, objectives: tuple[str, ...]) -> dict[str, str]:
    return {
        "search_space_hash": space.hash(),
        "qrels_fingerprint": dataset.qrels_fingerprint(),
        "objectives": ",".join(objectives),
    }


def _directions(objectives) -> list[str]:
    return ["minimize" if o == LATENCY else "maximize" for o in objectives]


def open_study(storage, name: str, identity: dict[str, str], *, create_attrs: dict[str, Any], continue_stale: bool,
               objectives: tuple[str, ...], sampler=None, pruner=None, create: bool = True):
    """Load the study called ``name`` when its identity matches (or with ``continue_stale``); otherwise use
    ``name-<identity hash>``, creating it when missing."""
    import hashlib

    import optuna

    def load(n):
        return optuna.load_study(study_name=n, storage=storage, sampler=sampler, pruner=pruner)

    names = {s.study_name for s in storage.get_all_studies()}
    candidates = [name]
    short = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    candidates.append(f"{name}-{short}")
    for n in candidates:
        if n not in names:
            continue
        study = load(n)
        attrs = study.user_attrs
        same = all(attrs.get(ATTR + k) == v for k, v in identity.items())
        if same:
            return study, False
        if n == name and continue_stale:
            if attrs.get(ATTR + "objectives") != identity["objectives"]:
                raise ConfigError(
                    f"study '{n}' optimises {attrs.get(ATTR + 'objectives')}, not {identity['objectives']}: "
                    "objectives cannot change within a study"
                )
            log.warning("continuing study '%s' although its search space or gold queries changed (--continue-stale)", n)
            return study, False
        if n == name:
            log.warning("study '%s' was made for another search space or other gold queries; using '%s-%s'", n, name, short)
    if not create:
        from evolve.errors import StorageError

        raise StorageError(f"no study '{name}' matches this search space and dataset: expected one made by `evolve run`")
    target = name if name not in names else f"{name}-{short}"
    study = optuna.create_study(study_name=target, storage=storage, directions=_directions(objectives),
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    if not study.user_attrs.get(ATTR + "search_space_hash"):
        for k, v in {**identity, **create_attrs}.items():
            study.set_user_attr(ATTR + k, v)
    return study, True


def current_trials(study, corpus_fingerprint: str | None, states=None):
    """Trials on the current corpus (all corpora when ``corpus_fingerprint`` is None)."""
    trials = study.get_trials(deepcopy=False, states=states)
    if corpus_fingerprint is None:
        return trials
    return [t for t in trials if t.user_attrs.get(ATTR + "corpus_fingerprint") == corpus_fingerprint]


# ----------------------------------------------------------------------------------------------- objective


class Objective:
    """Evaluates one trial's config on the tune queries, reporting per-query scores for the pruner."""

    def __init__(self, opts: StudyOptions, dataset: Dataset, splits: QuerySplits, tracker, parent_id: str,
                 cache: EmbeddingCache, embedders: EmbedderPool, progress: ProgressFactory):
        self.opts = opts
        self.dataset = dataset
        self.splits = splits
        self.tracker = tracker
        self.parent_id = parent_id
        self.cache = cache
        self.embedders = embedders
        self.progress = progress
        self.corpus_fp = dataset.corpus_fingerprint()
        self.tune_qrels = splits.qrels(dataset, "tune")
        import random

        order = sorted(self.tune_qrels)
        random.Random(splits.seed).shuffle(order)
        self.tune_order = order  # fixed across trials: the pruner compares the same query at the same step
        self.primary = opts.objectives[0]
        self.durations: list[float] = []

        self.cache_stats = CacheStats()  # the night's cache use, for `evolve cache stats`

    def _find_repeat(self, study, params: dict, number: int):
        """A COMPLETE trial with these params (its values are reused), or None. With parallel workers, a trial
        with a lower number may be running the same params right now: wait for it instead of running them
        twice (a lower-numbered trial still sampling has no corpus attribute yet: wait for that too)."""
        import optuna
        from optuna.trial import TrialState

        checked = time.monotonic()
        while True:
            twin = None
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
                if t.number == number:
                    continue
                fp = t.user_attrs.get(ATTR + "corpus_fingerprint")
                if t.state == TrialState.COMPLETE:
                    if fp == self.corpus_fp and t.params == params:
                        return t
                elif t.number < number and (fp is None or (fp == self.corpus_fp and t.params == params)):
                    twin = t
            if twin is None:
                return None
            time.sleep(0.5)
            if time.monotonic() - checked > max(1, self.opts.heartbeat_interval):
                checked = time.monotonic()
                optuna.storages.fail_stale_trials(study)  # a twin whose worker died must not hold us forever

    def __call__(self, trial) -> float | list[float]:
        import optuna

        t0 = time.perf_counter()
        params = self.opts.space.sample(trial)
        trial.set_user_attr(ATTR + "pid", os.getpid())  # which worker runs it (distributed mode, tests)
        trial.set_user_attr(ATTR + "host", socket.gethostname())
        trial.set_user_attr(ATTR + "corpus_fingerprint", self.corpus_fp)  # last: marks the params as final
        trial.set_user_attr(ATTR + "parent_run_id", self.parent_id)
        retried = trial.study._storage.get_trial(trial._trial_id).system_attrs.get("failed_trial")
        run_tags = {
            "evolve_kind": "trial",
            "optuna_study": trial.study.study_name,
            "optuna_trial_number": trial.number,
            "corpus_fingerprint": self.corpus_fp,
        }
        if retried is not None:
            run_tags["evolve.retry_of_trial_id"] = retried
            trial.set_user_attr(ATTR + "retry_of", retried)
        run_id = self.tracker.start_run(f"trial-{trial.number}", parent_id=self.parent_id, tags=run_tags)
        trial.set_user_attr(ATTR + "mlflow_run_id", run_id)
        try:
            self.tracker.log_params(run_id, params)
            config = self.opts.space.config_for(params)
            trial.set_user_attr(ATTR + "config", config.to_dict())
            self.tracker.log_params(run_id, {k: v for k, v in flatten(config.to_dict()).items() if k not in params})
            repeat = None if retried is not None else self._find_repeat(trial.study, params, trial.number)
            if repeat is not None:
                recorded = repeat.user_attrs.get(ATTR + "metrics") or {}
                trial.set_user_attr(ATTR + "repeat_of", repeat.number)
                trial.set_user_attr(ATTR + "metrics", recorded)
                self.tracker.set_tags(run_id, {"evolve.repeat_of_trial": repeat.number, "evolve.state": "COMPLETE"})
                self.tracker.log_metrics(run_id, {k: v for k, v in recorded.items() if "@" in k}, prefix="tune_")
                self.tracker.end_run(run_id, "FINISHED")
                return repeat.values if len(self.opts.objectives) > 1 else repeat.value
            values, metrics = self._evaluate(trial, config, run_id)
            duration = time.perf_counter() - t0
            self.durations.append(duration)
            trial.set_user_attr(ATTR + "metrics", metrics)
            trial.set_user_attr(ATTR + "duration_seconds", round(duration, 3))
            self.tracker.set_tags(run_id, {"evolve.state": "COMPLETE"})
            self.tracker.end_run(run_id, "FINISHED")
            return values if len(values) > 1 else values[0]
        except optuna.TrialPruned:
            trial.set_user_attr(ATTR + "duration_seconds", round(time.perf_counter() - t0, 3))
            self.tracker.set_tags(run_id, {"evolve.state": "PRUNED"})
            self.tracker.end_run(run_id, "FINISHED")
            raise
        except BaseException as err:
            message = str(err) if isinstance(err, EvolveError) else f"{type(err).__name__}: {' '.join(str(err).split())}"
            if isinstance(err, KeyboardInterrupt):
                message = "interrupted"
            try:
                trial.set_user_attr(ATTR + "error", message[:2000])
                self.tracker.set_tags(run_id, {"evolve.state": "FAIL", "evolve.error": message[:2000]})
                folder = self._trial_dir(trial)
                from evolve._io import atomic_write_text

                atomic_write_text(folder / "error.txt", message + "\n\n" + traceback.format_exc())
                self.tracker.log_artifact(run_id, folder / "error.txt")
            finally:
                self.tracker.end_run(run_id, "FAILED")
            log.info("trial %d failed: %s", trial.number, message)
            raise

    def _trial_dir(self, trial) -> Path:
        return self.opts.workspace.runs_dir / trial.study.study_name / f"trial-{trial.number:05d}"

    def _evaluate(self, trial, config: PipelineConfig, run_id: str):
        import optuna

        pipe = Pipeline(config, self.dataset, cache=self.cache, embedders=self.embedders, progress=self.progress,
                        seed=self.splits.seed)
        pipe.prepare()
        pipe.embed_queries(self.tune_order)
        can_prune = self.opts.prune and len(self.opts.objectives) == 1
        metric = self.primary
        run: dict[str, dict[str, float]] = {}
        step = 0
        batch = max(1, self.opts.prune_batch)
        for i in range(0, len(self.tune_order), batch):
            qids = self.tune_order[i : i + batch]
            part = pipe.retrieve(qids)
            run.update(part)
            if can_prune:
                _, per_query = evaluate_run({q: self.tune_qrels[q] for q in qids}, part, [metric])
                for q in qids:
                    trial.report(per_query[metric][q], step)
                    step += 1
                if trial.should_prune():
                    trial.set_user_attr(ATTR + "pruned_at_query", step)
                    trial.set_user_attr(ATTR + "pruned_fraction_done", step / len(self.tune_order))
                    raise optuna.TrialPruned(f"pruned after {step} of {len(self.tune_order)} tune queries")
        quality = [o for o in self.opts.objectives if o != LATENCY]
        metrics_list = list(dict.fromkeys(quality + ["ndcg@10", "recall@100", "mrr@10", "map@100"]))
        means, per_query = evaluate_run(self.tune_qrels, run, metrics_list)
        stats = pipe.stats
        self.cache_stats.add(stats)
        extra = {
            "embed_seconds": stats.embed_seconds,
            "cache_hit_rate": stats.hit_rate,
            "n_embedded": stats.n_embedded,
            "retrieve_seconds": pipe.retrieve_seconds,
            "rerank_seconds": pipe.rerank_seconds,
            LATENCY: 1000.0 * (pipe.retrieve_seconds + pipe.rerank_seconds) / max(1, len(run)),
            "n_chunks": len(pipe.chunks),
        }
        self.tracker.log_metrics(run_id, means, prefix="tune_")
        self.tracker.log_metrics(run_id, extra)
        self._write_artifacts(trial, config, run, per_query, run_id)
        metrics = {**means, **extra}
        values = [extra[LATENCY] if o == LATENCY else means[o] for o in self.opts.objectives]
        if any(math.isnan(v) for v in values):
            raise EvolveError(f"objective is NaN for trial {trial.number}")
        return values, metrics

    def _write_artifacts(self, trial, config, run, per_query, run_id) -> None:
        from evolve._io import atomic_write_text

        folder = self._trial_dir(trial)
        atomic_write_text(folder / "config.yaml", config_to_yaml(config))
        metrics = list(per_query)
        lines = ["query_id\t" + "\t".join(metrics)]
        for q in sorted(per_query[metrics[0]]):
            lines.append(q + "\t" + "\t".join(f"{per_query[m][q]:.6f}" for m in metrics))
        atomic_write_text(folder / "per_query.tsv", "\n".join(lines) + "\n")
        write_trec_run(run, folder / "run.trec", tag=f"trial-{trial.number}")
        if config.tracking.log_texts:
            qlines = [f"{q}\t{self.dataset.queries[q]}" for q in sorted(run)]
            atomic_write_text(folder / "queries.tsv", "\n".join(qlines) + "\n")
        self.tracker.log_artifacts(run_id, folder)


# ----------------------------------------------------------------------------------------------- the night


def _sampler(seed: int | None):
    import optuna

    return optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True, seed=seed,
                                      n_startup_trials=8)


def _pruner(opts: StudyOptions):
    import optuna

    if not opts.prune or len(opts.objectives) > 1:
        return optuna.pruners.NopPruner()
    return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=max(2 * opts.prune_batch, 20))


def load_study_dataset(opts: StudyOptions) -> Dataset:
    from evolve.datasets import load_dataset

    ds = load_dataset(opts.dataset_spec, strict=opts.strict)
    if opts.subset:
        ds = ds.subset(opts.subset, None)
    return ds


def _dataset_spec(spec: str) -> str:
    from evolve.datasets import BUNDLED

    return spec if spec in BUNDLED else str(Path(spec).expanduser().absolute())


def prepare_study(opts: StudyOptions, dataset: Dataset, *, create: bool = True, failed_trial_callback=None):
    """Storage, study (identity-checked) and query splits."""
    from evolve.storage import open_storage

    storage = open_storage(opts.storage_url or opts.workspace.default_storage,
                           heartbeat_interval=opts.heartbeat_interval, grace_period=opts.grace_period,
                           failed_trial_callback=failed_trial_callback)
    identity = study_identity(opts.space, dataset, opts.objectives)
    splits = make_splits(dataset, opts.split_seed, opts.holdout_fraction)
    create_attrs = {
        "dataset": _dataset_spec(opts.dataset_spec),
        "subset": opts.subset,
        "split_seed": opts.split_seed,
        "splits": splits.to_dict(),
        "search_space": opts.space.source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    study, created = open_study(storage, opts.study_name, identity, create_attrs=create_attrs,
                                continue_stale=opts.continue_stale, objectives=opts.objectives,
                                sampler=_sampler(opts.seed), pruner=_pruner(opts), create=create)
    if opts.continue_stale:
        _check_compatible(study, opts.space)
    stored = study.user_attrs.get(ATTR + "splits")
    if stored:
        splits = QuerySplits.from_dict(stored)  # the split fixed when the study was created
    return storage, study, splits


def _check_compatible(study, space: SearchSpace) -> None:
    """Optuna cannot continue a study whose categorical choices (or a param's kind) changed: say so in one line."""
    seen = {}
    for t in study.get_trials(deepcopy=False):
        seen.update(t.distributions)
    for name, spec in space.params.items():
        old = seen.get(name)
        if old is None:
            continue
        kind = type(old).__name__
        new_kind = {"categorical": "CategoricalDistribution", "int": "IntDistribution", "float": "FloatDistribution"}[spec.kind]
        changed = kind != new_kind or (spec.kind == "categorical" and tuple(old.choices) != tuple(spec.choices))
        if changed:
            raise ConfigError(
                f"--continue-stale: '{name}' changed its {'choices' if kind == new_kind else 'kind'} "
                f"({getattr(old, 'choices', kind)} -> {spec.choices if spec.kind == 'categorical' else spec.kind}), "
                f"which study '{study.study_name}' cannot take; drop --continue-stale to start a new study"
            )


def champion_config(workspace: Workspace, space: SearchSpace | None = None) -> PipelineConfig:
    """The workspace champion, else the search space's starting point, else the shipped default."""
    if workspace.champion_path.exists():
        return load_config(workspace.champion_path)
    return space.start_config() if space is not None else load_config()


def _enqueue_champion(study, opts: StudyOptions, corpus_fp: str) -> None:
    from optuna.trial import TrialState

    champ = champion_config(opts.workspace, opts.space)
    params = opts.space.params_of(champ)
    if params is None:
        log.warning("the champion lies outside the search space: it is not re-evaluated as a trial")
        return
    for t in current_trials(study, corpus_fp, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if t.params == params:
            return
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if any(t.system_attrs.get("fixed_params") == params for t in waiting):
        return
    study.enqueue_trial(params, user_attrs={ATTR + "champion": True})


def _mark_mlflow_failed(tracker):
    """Optuna's failed-trial callback: a trial whose process died gets its MLflow run marked FAILED."""

    def callback(study, trial) -> None:
        run_id = trial.user_attrs.get(ATTR + "mlflow_run_id")
        if not run_id:
            return
        try:
            run = tracker.client.get_run(run_id)
            if run.info.status == "RUNNING":
                tracker.client.set_tag(run_id, "evolve.error", "worker died (heartbeat lost); trial marked FAIL")
                tracker.client.set_tag(run_id, "evolve.state", "FAIL")
                tracker.client.set_terminated(run_id, status="FAILED")
        except Exception as err:  # never let recovery bookkeeping stop a night
            log.warning("could not mark MLflow run %s of dead trial %d as FAILED: %s", run_id, trial.number, err)

    return callback


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
    dataset = load_study_dataset(opts)
    tracking_uri = opts.tracking_uri or ws.default_tracking_uri
    from evolve.secrets import warn_inline_password

    warn_inline_password(tracking_uri, "tracking URI")
    artifact_root = ws.artifacts_dir if tracking_uri.startswith(("sqlite:", "file:", "/")) else None
    tracker = Tracker(tracking_uri, opts.study_name, artifact_root=artifact_root,
                      heartbeat_interval=opts.heartbeat_interval)
    callbacks = [_mark_mlflow_failed(tracker)]
    if opts.max_retry is not None:
        from optuna import storages

        retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
        callbacks.append(retry(max_retry=opts.max_retry, inherit_intermediate_values=False))

    def failed_trial_callback(study, trial):
        for cb in callbacks:
            cb(study, trial)

    storage, study, splits = prepare_study(opts, dataset, create=not opts.worker,
                                           failed_trial_callback=failed_trial_callback)
    if study.study_name != opts.study_name:
        tracker.close()
        tracker = Tracker(tracking_uri, study.study_name, artifact_root=artifact_root,
                          heartbeat_interval=opts.heartbeat_interval)
        callbacks[0] = _mark_mlflow_failed(tracker)
    tracker.fail_stale_runs(opts.grace_period)
    optuna.storages.fail_stale_trials(study)
    corpus_fp = dataset.corpus_fingerprint()
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
    })
    cache = EmbeddingCache.open(ws)  # + the shared cache behind it when the workspace names one (EVOLVE_CACHE_URL)
    embedders = EmbedderPool()
    objective = Objective(opts, dataset, splits, tracker, parent_id, cache, embedders, progress)
    if not opts.worker:
        _enqueue_champion(study, opts, corpus_fp)
    started: list[int] = []

    def record(study_, trial):
        started.append(trial.number)
        if on_trial is not None:
            on_trial(trial)

    optuna_callbacks = [record]
    if opts.study_total is not None:
        from optuna.study import MaxTrialsCallback

        optuna_callbacks.append(MaxTrialsCallback(opts.study_total, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        optuna_callbacks.append(_stop_after_failures(5))
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
                summary.report = report_best(study, opts, dataset, splits, tracker, cache, embedders, progress,
                                             corpus_fp)
            summary.best = best_trial_info(study, corpus_fp)
            summary.wall_seconds = time.perf_counter() - t_start
            engines = _engine_starts()
            tracker.log_metrics(parent_id, {
                **({"vllm_engine_starts": engines} if engines is not None else {}),
                "n_complete": summary.n_complete, "n_pruned": summary.n_pruned, "n_failed": summary.n_failed,
                "n_repeats": summary.n_repeats, "pruned_saved_seconds": summary.pruned_saved_seconds,
                "wall_seconds": summary.wall_seconds,
                **({"best_tune_" + mlflow_name(opts.objectives[0]): summary.best["value"]} if summary.best else {}),
            })
            if status == "FINISHED":
                _night_artifacts(study, opts, summary, tracker, parent_id, corpus_fp)
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
            _shutdown_engines()
    return summary


def _stop_after_failures(limit: int):
    """Stop this worker after ``limit`` failed trials in a row (a broken node must not spin forever)."""
    from optuna.trial import TrialState

    streak = [0]

    def callback(study, trial):
        streak[0] = streak[0] + 1 if trial.state == TrialState.FAIL else 0
        if streak[0] >= limit:
            log.warning("stopping this worker after %d failed trials in a row", limit)
            study.stop()

    return callback


def _engine_starts() -> int | None:
    """vLLM engines started in this process (None when the vllm backend was never used)."""
    import sys

    mod = sys.modules.get("evolve.embedders._vllm")
    return getattr(mod, "ENGINE_STARTS", None)


def _shutdown_engines() -> None:
    """Stop the process-wide vLLM engines and pooled rerankers (only if they were ever loaded)."""
    import sys

    rer = sys.modules.get("evolve.rerankers")
    if rer is not None and hasattr(rer, "close_rerankers"):
        rer.close_rerankers()
    mod = sys.modules.get("evolve.embedders._vllm")
    if mod is not None and hasattr(mod, "shutdown_engines"):
        mod.shutdown_engines()


def best_trial_info(study, corpus_fp: str | None) -> dict | None:
    from optuna.trial import TrialState

    done = current_trials(study, corpus_fp, states=(TrialState.COMPLETE,))
    if not done:
        return None
    if len(study.directions) > 1:
        best = sorted(done, key=lambda t: -t.values[0])[0]
    else:
        best = max(done, key=lambda t: t.value)
    return {"number": best.number, "value": best.values[0], "values": list(best.values), "params": best.params,
            "mlflow_run_id": best.user_attrs.get(ATTR + "mlflow_run_id")}


def report_best(study, opts, dataset, splits, tracker, cache, embedders, progress, corpus_fp) -> dict:
    """Report metrics for the best trials by tune score, computed after tuning; no decision reads them."""
    from optuna.trial import TrialState

    qrels = splits.qrels(dataset, "report")
    if not qrels:
        return {}
    done = current_trials(study, corpus_fp, states=(TrialState.COMPLETE,))
    done = [t for t in done if ATTR + "repeat_of" not in t.user_attrs]
    done.sort(key=lambda t: -t.values[0])
    out = {}
    seen_configs = set()
    for t in done:
        if len(out) >= opts.report_top:
            break
        cfg_dict = t.user_attrs.get(ATTR + "config")
        if not cfg_dict:
            continue
        key = json.dumps(cfg_dict, sort_keys=True)
        if key in seen_configs:
            continue
        seen_configs.add(key)
        cfg = PipelineConfig.model_validate(cfg_dict)
        pipe = Pipeline(cfg, dataset, cache=cache, embedders=embedders, progress=progress, seed=splits.seed)
        ev = pipe.evaluate(qrels, split=splits.report_split)
        run_id = t.user_attrs.get(ATTR + "mlflow_run_id")
        if run_id:
            tracker.log_metrics(run_id, ev.metrics, prefix="report_")
        study.set_user_attr(ATTR + f"report.{t.number}", ev.metrics)
        out[t.number] = ev.metrics
    return out


def _night_artifacts(study, opts, summary: NightSummary, tracker, parent_id, corpus_fp) -> None:
    import tempfile

    from evolve._io import atomic_write_text
    from evolve.leaderboard import leaderboard_frame, plot_study, summary_markdown

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame = leaderboard_frame(study, corpus_fp)
        atomic_write_text(folder / "leaderboard.csv", frame.to_csv(index=False))
        atomic_write_text(folder / "summary.md", summary_markdown(study, opts, summary, frame))
        for path in plot_study(study, folder):
            tracker.log_artifact(parent_id, path, "plots")
        tracker.log_artifact(parent_id, folder / "leaderboard.csv")
        tracker.log_artifact(parent_id, folder / "summary.md")
