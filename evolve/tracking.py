"""MLflow: one parent run per invocation, one nested child run per trial, heartbeats, provenance."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from evolve.evaluate import mlflow_name

__all__ = ["Tracker", "HEARTBEAT_TAG"]

log = logging.getLogger("evolve.tracking")

HEARTBEAT_TAG = "evolve.heartbeat"


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_TRACKING_INSECURE_TLS", "false")
    for name in ("mlflow", "alembic", "alembic.runtime.migration", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)


class Tracker:
    """A thin layer over ``MlflowClient`` for one experiment (named after the study)."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path | None = None,
                 heartbeat_interval: float = 10.0):
        _quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_name = experiment
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            location = (artifact_root / experiment).absolute().as_uri() if artifact_root is not None else None
            try:
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
            except Exception:  # created concurrently by another worker
                exp = self.client.get_experiment_by_name(experiment)
                if exp is None:
                    raise
                self.experiment_id = exp.experiment_id
        else:
            self.experiment_id = exp.experiment_id
        self._beating: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = heartbeat_interval
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ runs
    def start_run(self, name: str, *, parent_id: str | None = None, tags: dict[str, Any] | None = None) -> str:
        all_tags = {"mlflow.runName": name, HEARTBEAT_TAG: f"{time.time():.0f}"}
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        all_tags.update({k: str(v) for k, v in (tags or {}).items()})
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        run_id = run.info.run_id
        with self._lock:
            self._beating.add(run_id)
        self._ensure_heartbeat()
        return run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        with self._lock:
            self._beating.discard(run_id)
        self.client.set_terminated(run_id, status=status)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, "" if v is None else str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], prefix: str = "", step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(prefix + mlflow_name(k), float(v), now, step) for k, v in sorted(metrics.items()) if v is not None]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i : i + 500])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_artifacts(self, run_id: str, folder: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path)

    # ------------------------------------------------------------------ heartbeats and recovery
    def _ensure_heartbeat(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="evolve-mlflow-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                ids = list(self._beating)
            for run_id in ids:
                try:
                    self.client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")
                except Exception as err:  # a missed beat is harmless; the next one retries
                    log.debug("heartbeat for %s failed: %s", run_id, err)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def fail_stale_runs(self, grace_period: float) -> list[str]:
        """Mark RUNNING runs whose heartbeat is older than ``grace_period`` seconds as FAILED (children) or
        KILLED (parents). A run with a fresh heartbeat belongs to a live process and is left alone."""
        from mlflow.entities import ViewType

        now = time.time()
        stale: list[str] = []
        runs = self.client.search_runs([self.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                       run_view_type=ViewType.ACTIVE_ONLY, max_results=5000)
        for run in runs:
            try:
                beat = float(run.data.tags.get(HEARTBEAT_TAG, run.info.start_time / 1000))
            except ValueError:
                beat = run.info.start_time / 1000
            if now - beat > grace_period and run.info.run_id not in self._beating:
                is_child = "mlflow.parentRunId" in run.data.tags
                self.client.set_tag(run.info.run_id, "evolve.error", "process died (heartbeat lost)")
                self.client.set_terminated(run.info.run_id, status="FAILED" if is_child else "KILLED")
                stale.append(run.info.run_id)
        return stale

    def child_runs(self, parent_id: str | None = None):
        filt = f"tags.mlflow.parentRunId = '{parent_id}'" if parent_id else "tags.evolve_kind = 'trial'"
        return self.client.search_runs([self.experiment_id], filter_string=filt, max_results=10000)
