"""The Optuna objective: one trial's config evaluated on the tune queries, recorded in MLflow."""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import time
import traceback
from pathlib import Path

from evolve.answer.metrics._context import context_metric_budget, context_recall_scores
from evolve.cache import CacheStats, EmbeddingCache
from evolve.config import PipelineConfig, config_to_yaml, flatten
from evolve.datasets import Dataset
from evolve.embedders import EmbedderPool
from evolve.errors import EvolveError
from evolve.evaluate import PRIMARY_METRIC, evaluate_run, per_query_lines, write_trec_run
from evolve.pipeline import Pipeline
from evolve.progress import ProgressFactory
from evolve.splits import QuerySplits
from evolve.study._options import ATTR, LATENCY, StudyOptions

log = logging.getLogger("evolve.study")

__all__ = [
    "Objective",
    "require_answers",
    "tuned_fusion_fields",
]


def require_answers(objectives, dataset: Dataset, qids) -> None:
    """A ``context_recall@T`` objective needs tune queries with reference answers: one line when there are none."""
    context = [o for o in objectives if context_metric_budget(o) is not None]
    if context and not any(dataset.answers.get(q) for q in qids):
        raise EvolveError(f"objective {context[0]}: expected tune queries with reference answers (a SQuAD-style "
                          "dataset, or a gold folder whose queries carry 'answers'), got none")


def tuned_fusion_fields(config: PipelineConfig) -> tuple[str, ...]:
    """The config fields ``fusion.optimize`` tunes for this config: none unless it is on and the mode is hybrid
    (``rrf``: ``fusion.rrf_k``; ``wsum``: ``fusion.weight``; ``mnz`` has none)."""
    if not (config.fusion.optimize and config.retrieval.mode == "hybrid"):
        return ()
    return {"rrf": ("fusion.rrf_k",), "wsum": ("fusion.weight",)}.get(config.fusion.method, ())


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
        #: the tune gold every trial of this night is scored on; only trials on the same gold compare
        self.gold_fp = splits.fingerprint(dataset, "tune")

        order = sorted(self.tune_qrels)
        random.Random(splits.seed).shuffle(order)
        self.tune_order = order  # fixed across trials: the pruner compares the same query at the same step
        self.primary = opts.objectives[0]
        self.durations: list[float] = []
        #: objectives scored on reference answers (``context_recall@T``), by name -> T
        self.context = {o: t for o in opts.objectives if (t := context_metric_budget(o)) is not None}
        require_answers(opts.objectives, dataset, self.tune_qrels)

        self.cache_stats = CacheStats()  # the night's cache use, for `evolve cache stats`

    def _find_repeat(self, study, params: dict, number: int):
        """A COMPLETE trial with these params on this corpus and tune gold (its values are reused), or None. With
        parallel workers, a trial with a lower number may be running the same params right now: wait for it
        instead of running them twice (a lower-numbered trial still sampling has no corpus attribute yet: wait for
        that too)."""
        import optuna
        from optuna.trial import TrialState

        checked = time.monotonic()
        legacy = study.user_attrs.get(ATTR + "legacy_gold_fingerprint")
        while True:
            twin = None
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
                if t.number == number:
                    continue
                fp = t.user_attrs.get(ATTR + "corpus_fingerprint")
                same = (fp == self.corpus_fp and t.params == params
                        and t.user_attrs.get(ATTR + "gold_fingerprint", legacy) == self.gold_fp)
                if t.state == TrialState.COMPLETE:
                    if same:
                        return t
                elif t.number < number and (fp is None or same):
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
        trial.set_user_attr(ATTR + "cuda_visible_devices", os.environ.get("CUDA_VISIBLE_DEVICES"))  # --gpus: one each
        trial.set_user_attr(ATTR + "gold_fingerprint", self.gold_fp)
        trial.set_user_attr(ATTR + "corpus_fingerprint", self.corpus_fp)  # last: marks the params as final
        trial.set_user_attr(ATTR + "parent_run_id", self.parent_id)
        retried = trial.study._storage.get_trial(trial._trial_id).system_attrs.get("failed_trial")
        run_tags = {
            "evolve_kind": "trial",
            "optuna_study": trial.study.study_name,
            "optuna_trial_number": trial.number,
            "corpus_fingerprint": self.corpus_fp,
            "gold_fingerprint": self.gold_fp,
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
            deferred = set(tuned_fusion_fields(config))  # logged once tuned (MLflow params never change)
            self.tracker.log_params(run_id, {k: v for k, v in flatten(config.to_dict()).items()
                                             if k not in params and k not in deferred})
            repeat = None if retried is not None else self._find_repeat(trial.study, params, trial.number)
            if repeat is not None:
                recorded = repeat.user_attrs.get(ATTR + "metrics") or {}
                trial.set_user_attr(ATTR + "repeat_of", repeat.number)
                trial.set_user_attr(ATTR + "metrics", recorded)
                twin_config = repeat.user_attrs.get(ATTR + "config")
                if deferred and twin_config:  # the twin's tuned fusion params are this trial's too
                    trial.set_user_attr(ATTR + "config", twin_config)
                    self._log_tuned(run_id, PipelineConfig.model_validate(twin_config), params)
                if len(self.opts.objectives) == 1:
                    # the twin's per-query values: a repeat that becomes the best still lets the pruner compare
                    for step, value in sorted(repeat.intermediate_values.items()):
                        trial.report(value, step)
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
        config = self._tune_fusion(trial, pipe, config, run_id)
        # per-query intermediate values in every single-objective trial (pruned or not): any complete trial can
        # be the pruner's reference. Multi-objective studies take none (optuna cannot prune them).
        reports = len(self.opts.objectives) == 1
        can_prune = self.opts.prune and reports
        metric = self.primary
        run: dict[str, dict[str, float]] = {}
        context: dict[str, dict[str, float]] = {m: {} for m in self.context}
        step = 0
        batch = max(1, self.opts.prune_batch)
        for i in range(0, len(self.tune_order), batch):
            qids = self.tune_order[i : i + batch]
            part = pipe.retrieve(qids)
            run.update(part)
            for m, budget in self.context.items():
                context[m].update(context_recall_scores(pipe, qids, budget))
            if reports:
                if metric in context:  # only queries with a reference answer have a value
                    values = [context[metric][q] for q in qids if q in context[metric]]
                else:
                    per_query = evaluate_run({q: self.tune_qrels[q] for q in qids}, part, [metric])[1][metric]
                    values = [per_query[q] for q in qids]
                for value in values:
                    trial.report(value, step)
                    step += 1
                if can_prune and trial.should_prune():
                    trial.set_user_attr(ATTR + "pruned_at_query", step)
                    done = min(i + batch, len(self.tune_order))
                    trial.set_user_attr(ATTR + "pruned_fraction_done", done / len(self.tune_order))
                    raise optuna.TrialPruned(f"pruned after {step} of {len(self.tune_order)} tune queries")
        quality = [o for o in self.opts.objectives if o != LATENCY and o not in context]
        metrics_list = list(dict.fromkeys(quality + ["ndcg@10", "recall@100", "mrr@10", "map@100"]))
        means, per_query = evaluate_run(self.tune_qrels, run, metrics_list)
        for m, values in context.items():
            per_query[m] = values
            means[m] = sum(values.values()) / len(values) if values else float("nan")
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

    def _tune_fusion(self, trial, pipe: Pipeline, config: PipelineConfig, run_id: str) -> PipelineConfig:
        """``fusion.optimize`` in hybrid mode: tune the fusion params on the tune queries' dense and sparse runs
        (``ranx.optimize_fusion`` on the study's objective) before scoring; the tuned config becomes the trial's
        (what promotion takes) and its MLflow params."""
        if not tuned_fusion_fields(config):
            return config
        from evolve.study._fusion import optimize_fusion

        dense, sparse = pipe.dense_run(self.tune_order), pipe.sparse_run(self.tune_order)
        # context_recall is no ranx metric: fusion is then tuned on nDCG@10 (the ranking the packing reads)
        target = PRIMARY_METRIC if self.primary in self.context else self.primary
        tuned = optimize_fusion(self.tune_qrels, dense, sparse, config.fusion, metric=target)
        config = config.model_copy(update={"fusion": tuned})
        pipe.config = config  # fusion is applied per retrieval; nothing built so far depends on it
        trial.set_user_attr(ATTR + "config", config.to_dict())
        self._log_tuned(run_id, config, trial.params)
        return config

    def _log_tuned(self, run_id: str, config: PipelineConfig, params: dict) -> None:
        flat = flatten(config.to_dict())
        fields = tuned_fusion_fields(config)
        self.tracker.log_params(run_id, {k: flat[k] for k in fields if k not in params})
        self.tracker.log_params(run_id, {"tuned." + k: flat[k] for k in fields})
        self.tracker.set_tags(run_id, {"evolve.fusion_optimized": ", ".join(f"{k}={flat[k]}" for k in fields)})

    def _write_artifacts(self, trial, config, run, per_query, run_id) -> None:
        from evolve._io import atomic_write_text

        folder = self._trial_dir(trial)
        atomic_write_text(folder / "config.yaml", config_to_yaml(config))
        atomic_write_text(folder / "per_query.tsv", per_query_lines(per_query))
        write_trec_run(run, folder / "run.trec", tag=f"trial-{trial.number}")
        if config.tracking.log_texts:
            qlines = [f"{q}\t{self.dataset.queries[q]}" for q in sorted(run)]
            atomic_write_text(folder / "queries.tsv", "\n".join(qlines) + "\n")
        self.tracker.log_artifacts(run_id, folder)
