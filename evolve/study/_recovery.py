"""Keeping a night alive: dead workers' MLflow runs, failure streaks, vLLM engines."""

from __future__ import annotations

import logging
import sys

from evolve.study._options import ATTR

log = logging.getLogger("evolve.study")

__all__ = [
    "mark_mlflow_failed",
    "stop_after_failures",
    "engine_starts",
    "shutdown_engines",
]


def mark_mlflow_failed(tracker):
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


def stop_after_failures(limit: int):
    """Stop this worker after ``limit`` failed trials in a row (a broken node must not spin forever)."""
    from optuna.trial import TrialState

    streak = [0]

    def callback(study, trial):
        streak[0] = streak[0] + 1 if trial.state == TrialState.FAIL else 0
        if streak[0] >= limit:
            log.warning("stopping this worker after %d failed trials in a row", limit)
            study.stop()

    return callback


def engine_starts() -> int | None:
    """vLLM engines started in this process (None when the vllm backend was never used)."""

    mod = sys.modules.get("evolve.embedders._vllm")
    return getattr(mod, "ENGINE_STARTS", None)


def shutdown_engines() -> None:
    """Stop the process-wide vLLM engines and pooled rerankers (only if they were ever loaded)."""

    rer = sys.modules.get("evolve.rerankers")
    if rer is not None and hasattr(rer, "close_rerankers"):
        rer.close_rerankers()
    mod = sys.modules.get("evolve.embedders._vllm")
    if mod is not None and hasattr(mod, "shutdown_engines"):
        mod.shutdown_engines()
